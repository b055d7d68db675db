"""The inference verbs, end to end, in a subprocess where torch (and onnx) cannot be imported."""

import io
import json
import shutil

import numpy as np
import onnxruntime
from PIL import Image

from conftest import gentool, png

PNG = b"\x89PNG"


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    return Image.open(io.BytesIO(data)).size


def test_sample_grid_is_seeded(runs, tmp_path):
    a = gentool("sample", runs["vae"], "-n", "16", "--seed", "3", torch_free=True).stdout
    b = gentool("sample", runs["vae"], "-n", "16", "--seed", "3", torch_free=True).stdout
    c = gentool("sample", runs["vae"], "-n", "16", "--seed", "4", torch_free=True).stdout
    assert a == b != c
    assert png_size(a) == (4 * 28 + 5 * 2, 4 * 28 + 5 * 2)
    gentool("sample", runs["ae"], "-n", "1", "-o", tmp_path / "one.png", torch_free=True)
    assert Image.open(tmp_path / "one.png").size == (28, 28)


def test_reconstruct_and_the_resize_note(runs, digits, tmp_path):
    proc = gentool("reconstruct", runs["vae"], digits[0], torch_free=True)
    assert png_size(proc.stdout) == (28, 28) and proc.stderr == ""
    Image.open(digits[0]).resize((56, 56)).save(tmp_path / "big.png")
    proc = gentool("reconstruct", runs["ae"], tmp_path / "big.png", digits[1], torch_free=True)
    assert "resized 56x56 -> 28x28" in proc.stderr
    assert png_size(proc.stdout)[0] > 28


def test_encode_formats_and_decode_round_trip(runs, digits, tmp_path):
    lines = gentool("encode", runs["vae"], *digits, "--json", torch_free=True).stdout.decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["input"] for r in rows] == [str(d) for d in digits]
    assert len(rows[0]["code"]) == 20 and len(rows[0]["logvar"]) == 20
    stdin_row = json.loads(gentool("encode", runs["vae"], "-", "--json", stdin=digits[0].read_bytes(), torch_free=True).stdout)
    assert stdin_row["input"] == "-" and np.allclose(stdin_row["code"], rows[0]["code"], atol=1e-6)

    gentool("encode", runs["ae"], *digits, "-o", tmp_path / "codes.npy", torch_free=True)
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (2, 32) and codes.dtype == np.float32
    gentool("encode", runs["ae"], *digits, "-o", tmp_path / "codes.csv", torch_free=True)
    assert np.allclose(np.loadtxt(tmp_path / "codes.csv", delimiter=","), codes, atol=1e-5)

    from_npy = gentool("decode", runs["ae"], tmp_path / "codes.npy", torch_free=True).stdout
    from_csv = gentool("decode", runs["ae"], tmp_path / "codes.csv", torch_free=True).stdout
    piped = gentool("decode", runs["vae"], "-", stdin="\n".join(lines).encode(), torch_free=True).stdout
    assert png_size(from_npy) == png_size(piped) == (2 * 28 + 3 * 2, 28 + 2 * 2)
    assert np.abs(np.asarray(Image.open(io.BytesIO(from_npy)), float) - np.asarray(Image.open(io.BytesIO(from_csv)), float)).max() <= 1


def test_decode_of_the_code_matches_reconstruct(runs, digits):
    code = gentool("encode", runs["vae"], digits[0], "--format", "npy", torch_free=True).stdout
    decoded = gentool("decode", runs["vae"], "-", stdin=code, torch_free=True).stdout
    assert np.array_equal(png(decoded), png(gentool("reconstruct", runs["vae"], digits[0], torch_free=True).stdout))


def test_interpolate_between_images_and_seeds(runs, digits):
    strip = gentool("interpolate", runs["vae"], *digits, "--steps", "5", torch_free=True).stdout
    assert png_size(strip) == (5 * 28 + 6 * 2, 28 + 4)
    seeds = gentool("interpolate", runs["ae"], "--seeds", "1,2", "--steps", "3", torch_free=True).stdout
    assert png_size(seeds) == (3 * 28 + 4 * 2, 28 + 4)
    first = np.asarray(Image.open(io.BytesIO(seeds)))[2:30, 2:30]
    alone = np.asarray(Image.open(io.BytesIO(gentool("sample", runs["ae"], "-n", "1", "--seed", "1", torch_free=True).stdout)))
    assert np.abs(first.astype(int) - alone.astype(int)).max() <= 1


def test_manifold_grid(runs):
    grid = gentool("manifold", runs["vae"], "--size", "5", "--dims", "3,7", torch_free=True).stdout
    assert png_size(grid) == (5 * 28 + 6 * 2,) * 2


def test_manifold_sweeps_the_most_active_dims_by_default(runs):
    session = onnxruntime.InferenceSession(str(runs["vae"] / "decoder.onnx"), providers=["CPUExecutionProvider"])
    activity = np.array(json.loads(session.get_modelmeta().custom_metadata_map["gentool.activity"]))
    assert activity.shape == (20,) and activity.min() >= 0 and activity.max() > 0
    first, second = np.argsort(-activity)[:2]
    proc = gentool("manifold", runs["vae"], "--size", "3", torch_free=True)
    assert f"dims {first},{second}" in proc.stderr
    assert np.array_equal(png(proc.stdout), png(gentool("manifold", runs["vae"], "--size", "3", "--dims", f"{first},{second}", torch_free=True).stdout))


def test_export_dir_single_onnx_and_bare_name(runs, digits, tmp_path):
    export_dir = tmp_path / "exports" / "vae"
    shutil.copytree(runs["vae"], export_dir, ignore=shutil.ignore_patterns("*.safetensors", "*.pt", "grids"))
    assert gentool("sample", export_dir, "-n", "2", torch_free=True).stdout.startswith(PNG)
    rows = gentool("encode", export_dir / "encoder.onnx", digits[0], torch_free=True).stdout
    assert len(json.loads(rows)["code"]) == 20
    proc = gentool("sample", export_dir / "encoder.onnx", torch_free=True, check=False)
    assert proc.returncode == 2 and "needs a decoder graph" in proc.stderr
    (tmp_path / "runs").mkdir()
    shutil.copytree(runs["ae"], tmp_path / "runs" / "ae-mnist")
    assert gentool("sample", "ae", "-n", "1", cwd=tmp_path, torch_free=True).stdout.startswith(PNG)


def test_training_verbs_without_torch_say_how_to_install(runs):
    for args in (["train", "vae", "--data", "mnist"], ["evaluate", runs["vae"]], ["export", runs["vae"], "--onnx"]):
        proc = gentool(*args, torch_free=True, fresh=True, check=False)
        assert proc.returncode == 2
        assert "needs PyTorch: pip install 'gentool[train]'" in proc.stderr


def test_help_works_without_torch():
    proc = gentool("--help", torch_free=True, fresh=True)
    assert b"sample" in proc.stdout and b"train" in proc.stdout
