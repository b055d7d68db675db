"""Bad input: one clear line on stderr, exit code 2, no traceback, no half-written file."""

import pytest

from conftest import gentool, in_process


def assert_usage_error(proc, message):
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("gentool: error:") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{vae}", "-n", "0"], "-n must be at least 1"),
        (["sample", "{vae}", "-n", "many"], "'many' is not a valid int"),
        (["sample", "{vae}", "--device", "gpu"], "'gpu' is not one of"),
        (["sample", "{vae}", "--device", "cuda"], "--device cuda"),
        (["sample", "nothing/here"], "no such file or directory"),
        (["sample", "nomodel"], "no run of a model 'nomodel'"),
        (["manifold", "{vae}", "--size", "-4"], "--size must be at least 2"),
        (["manifold", "{vae}", "--size", "100000"], "--size must be at most 100"),
        (["sample", "{vae}", "-n", "1000000000"], "-n must be at most 100000"),
        (["sample", "{vae}", "-n", "4", "--nrow", "0"], "--nrow must be at least 1"),
        (["interpolate", "{vae}", "--seeds", "1,2", "--steps", "100000000"], "--steps must be at most 1000"),
        (["score", "{vae}", "{digit}", "--samples", "100000000"], "--samples must be at most 10000"),
        (["reconstruct", "{vae}", "/dev/zero"], "/dev/zero is larger than 256 MiB"),
        (["manifold", "{vae}", "--dims", "0,99"], "--dims must name two different latent dimensions"),
        (["interpolate", "{vae}", "--steps", "1", "--seeds", "1,2"], "--steps must be at least 2"),
        (["interpolate", "{vae}", "--seeds", "1"], "--seeds takes 2 seeds 'A,B', got '1'"),
        (["interpolate", "{vae}", "--seeds", "-1,7"], "--seeds must be a seed in 0..2^63-1, got -1"),
        (["sample", "{vae}", "--seed", "-1"], "--seed must be a seed in 0..2^63-1, got -1"),
        (["sample", "{vae}", "--seed", str(2**63)], "--seed must be a seed in 0..2^63-1"),
        (["train", "vae", "--seed", "-1"], "--seed must be a seed in 0..2^63-1, got -1"),
        (["arithmetic", "{vae}", "--plus-seeds", "-1"], "--plus-seeds must be a seed"),
        (["train", "gan", "--width", "0"], "--width must be at least 1, got 0"),
        (["train", "gan", "--hidden", "-1"], "--hidden must be at least 1, got -1"),
        (["train", "vae", "--latent-dim", "1000000000000"], "--latent-dim must be at most 65536"),
        (["train", "dae", "--depth", "-1"], "--depth must be at least 0, got -1"),
        (["train", "vae", "--beta", "nan"], "--beta must be a finite number, got 'nan'"),
        (["interpolate", "{vae}", "{digit}"], "needs two images"),
        (["reconstruct", "{vae}", "{notimage}"], "not a readable PNG/JPEG image"),
        (["reconstruct", "{vae}", "{empty}"], "empty input"),
        (["reconstruct", "{vae}", "{digit}", "-o", "{tmp}/out.gif"], "unsupported output format"),
        (["decode", "{vae}", "{notimage}"], "cannot read codes"),
        (["decode", "{ae}", "{codes3}"], "codes must have shape (N, 32)"),
        (["sample", "{runs}"], "no .onnx graphs"),
        (["sample", "{weights}"], "is not an .onnx file"),
        (["bogus"], "No such command 'bogus'"),
        (["evaluate", "{vae}", "--iw-samples", "-1"], "--iw-samples must be 0 or more, got -1"),
        (["evaluate", "{ae}", "--noise-level", "0.1"], "--noise-level is for dae models, not 'ae'"),
        (["evaluate", "{vae}", "--samples", "10", "--full"], "drop the model options"),
    ],
)
def test_inference_usage_errors(runs, digits, tmp_path, args, message):
    (tmp_path / "notimage.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "codes3.csv").write_text("1,2,3\n")
    places = {"vae": runs["vae"], "ae": runs["ae"], "digit": digits[0], "tmp": tmp_path, "runs": runs["vae"].parent,
              "notimage": tmp_path / "notimage.png", "empty": tmp_path / "empty.png", "codes3": tmp_path / "codes3.csv",
              "weights": runs["vae"] / "model.safetensors"}
    assert_usage_error(in_process(*[a.format(**places) for a in args]), message)


def test_evaluate_lists_the_options_each_family_declares():
    shown = " ".join(in_process("evaluate", "--help").stdout.decode().replace("│", " ").split())
    assert "Model options" in shown and "--iw-samples" in shown and "(vae models; default 100)" in shown
    assert "(dae models)" in shown and "(cae or ddpm or vae models)" in shown


def test_empty_stdin(runs):
    assert_usage_error(gentool("encode", runs["vae"], "-", stdin=b"", torch_free=True, check=False), "empty input")


def test_unwritable_output_leaves_nothing_behind(runs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    assert_usage_error(gentool("sample", runs["vae"], "-o", tmp_path / "missing" / "x.png", torch_free=True, check=False),
                       "cannot write")
    locked.chmod(0o500)
    try:
        proc = gentool("sample", runs["vae"], "-o", locked / "x.png", torch_free=True, check=False)
    finally:
        locked.chmod(0o700)
    if proc.returncode == 0:  # root ignores directory permissions
        pytest.skip("running as root: directory permissions do not apply")
    assert_usage_error(proc, "cannot write")
    assert list(locked.iterdir()) == []


def test_existing_output_is_kept_when_a_verb_fails(runs, tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious")
    gentool("reconstruct", runs["vae"], tmp_path / "nope.png", "-o", target, torch_free=True, check=False)
    assert target.read_bytes() == b"precious" and [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_lying_data_files_cost_no_more_than_their_header(tmp_path):
    """A gzip IDX file whose header promises little but whose stream goes on is refused without
    inflating the rest; one that promises terabytes is refused on its header; huge labels are refused."""
    import gzip

    import numpy as np

    from gentool import data
    from gentool.errors import UsageError

    header = np.array([0x803, 2, 28, 28], ">i4").tobytes()
    with gzip.open(tmp_path / "long.gz", "wb") as f:
        f.write(header + bytes(2 * 784))
        f.write(bytes(50 * 2**20))  # 50 MB more than the header says
    with pytest.raises(UsageError, match="not a valid IDX file"):
        data._read_idx(tmp_path / "long.gz", 3)
    with gzip.open(tmp_path / "huge.gz", "wb") as f:
        f.write(np.array([0x803, 2**30, 2**15, 2**15], ">i4").tobytes())
    with pytest.raises(UsageError, match="not a valid IDX file"):
        data._read_idx(tmp_path / "huge.gz", 3)
    np.savez(tmp_path / "labels.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 2, 10**18]))
    proc = gentool("train", "ae", "--arch", "mlp", "--data", tmp_path / "labels.npz", check=False)
    assert_usage_error(proc, "labels must be class indices below 100000")


def test_a_test_split_of_another_size_fails_before_training(tmp_path):
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mixed.npz", x_train=rng.integers(0, 256, (4096, 28, 28), np.uint8),
             x_test=rng.integers(0, 256, (16, 32, 32), np.uint8))
    start = time.monotonic()
    proc = gentool("train", "ae", "--data", tmp_path / "mixed.npz", "--out", tmp_path / "run", check=False)
    assert_usage_error(proc, "the test split of 'mixed' has images of shape [1, 32, 32], the model expects [1, 28, 28]")
    assert not any((tmp_path / "run").iterdir()) and time.monotonic() - start < 60  # no epoch (minutes for a conv ae) ran
