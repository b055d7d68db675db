"""The ddpm family's own promises (the conformance test covers the protocol): its loss is loss_simple
over the schedule the samplers read, and its sides and widths are checked before anything is built."""

import pytest
import torch

from gentool import schedule, zoo
from gentool.errors import UsageError


@pytest.mark.parametrize("schedule_name, conditional", [("linear", False), ("cosine", False), ("linear", True)])
def test_the_loss_is_loss_simple_over_the_samplers_schedule(schedule_name, conditional):
    """E ||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t [, label])||^2 with x0 = 2x - 1,
    t uniform over the T steps and abar the runtime's own table; a conditional model sees the null
    label (the class count) in place of a `--label-dropout` share of the labels."""
    hparams = {"width": 8, "schedule": schedule_name, "conditional": conditional, "label_dropout": 0.5}
    model = zoo.get("ddpm")((1, 28, 28), hparams, 10 if conditional else None)
    abar = torch.tensor(schedule.alphas_cumprod(schedule_name), dtype=torch.float32)
    assert torch.equal(model.abar, abar)
    x, y = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    torch.manual_seed(3)
    got = model.losses(x, y)["loss"]
    torch.manual_seed(3)
    t = (torch.rand(64) * 1000).long()
    eps = torch.randn_like(x)
    label = (torch.where(torch.rand(64) < 0.5, 10, y),) if conditional else ()
    a = abar[t].view(-1, 1, 1, 1)
    expected = ((model.net(a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * eps, t, *label) - eps) ** 2).mean()
    assert torch.allclose(got, expected)
    if conditional:
        assert 10 < int((label[0] == 10).sum()) < 54  # both kinds of label in the batch
    guidance = {"null_label": 10} if conditional else {}
    assert model.graph_metadata() == {"schedule": schedule_name, "diffusion_steps": 1000, **guidance}


def test_conditional_needs_labels():
    with pytest.raises(UsageError, match="--conditional needs labelled data"):
        zoo.get("ddpm")((1, 28, 28), {"width": 8, "conditional": True}, None)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    from gentool import train as training

    return training.run(training.Options(model="ddpm", data="mnist", epochs=1, batch_size=16, limit=32, device="cpu",
                                         out=tmp_path_factory.mktemp("cddpm") / "run", hparam_args=("--conditional", "--width", "8")))


def test_guidance_mixes_the_labels_and_the_null_labels_estimates(conditional_run):
    """eps_null + w (eps_label - eps_null) from one call on both; w = 0 is the null label's estimate
    alone and w = 1 the label's alone; `sample --label 3 --guidance 2` draws it torch-free."""
    import numpy as np

    from conftest import gentool, png
    from gentool.runtime import diffusion
    from gentool.runtime.artifact import Artifact

    art = Artifact(str(conditional_run), "cpu")
    assert art.meta["null_label"] == 10 and "label" in art.input_names("eps")
    x, labels = np.random.default_rng(0).standard_normal((3, 1, 28, 28)), np.array([3, 3, 7])

    def direct(label):
        return art.run("eps", {"x": x.astype(np.float32), "t": np.full(3, 500), "label": label})["eps"].astype(np.float64)

    on_label, on_null = direct(labels), direct(np.full(3, 10))
    for w in (0.0, 1.0, 2.5):
        assert np.allclose(diffusion.eps_network(art, labels, w)(x, 500), on_null + w * (on_label - on_null), atol=1e-5)
    image = png(gentool("sample", conditional_run, "-n", "1", "--label", "3", "--guidance", "2", "--steps", "4", torch_free=True).stdout)
    assert image.shape == (28, 28)
    proc = gentool("sample", conditional_run, "--guidance", "-1", torch_free=True, check=False)
    assert proc.returncode == 2 and "--guidance must be a number in 0..100, got -1.0" in proc.stderr


@pytest.mark.parametrize("shape, hparams, message", [((1, 30, 30), {}, "needs image sides divisible by 4 (got 30x30)"),
                                                     ((1, 28, 28), {"width": 12}, "--width must be a multiple of 8")])
def test_sides_and_widths_are_checked(shape, hparams, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        zoo.get("ddpm")(shape, hparams, None)


def test_evaluate_gives_a_row_per_sampler_setting(conditional_run):
    """`evaluate --setting` rows: the figures of each sampler setting, its time per 1,000 images,
    and a conditional model's label accuracy; a setting that is no sampler option is one line."""
    import json

    from conftest import gentool

    proc = gentool("evaluate", conditional_run, "--samples", "40", "--setting", "sampler=ddim,steps=2", "--setting", "sampler=dpm++,steps=3,guidance=0",
                   "--json", torch_free=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["setting"] for row in rows] == ["sampler=ddim,steps=2", "sampler=dpm++,steps=3,guidance=0.0"]
    assert all(row["samples"] == 40 and row["seconds_per_1000"] > 0 and 0 <= row["label_accuracy"] <= 1 for row in rows)
    assert rows[1]["sampler"] == "dpm++" and rows[1]["steps"] == 3
    for args, message in [(["--setting", "colour=red"], "--setting takes NAME=VALUE pairs of sampler options"),
                          (["--setting", "steps=many"], "--setting steps takes a whole number, got 'many'"),
                          (["--setting", "steps=2", "--truncation", "1"], "give --truncation values or --setting rows, not both")]:
        proc = gentool("evaluate", conditional_run, "--samples", "10", *args, torch_free=True, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_evaluate_gives_the_test_loss_by_range_of_t(conditional_run):
    """`evaluate RUN`: loss_simple of the exported (averaged) network in ten ranges of t and their
    mean, on the split's evenly spaced subset, as the family's metrics."""
    import json

    from conftest import gentool

    found = json.loads(gentool("evaluate", conditional_run, "--limit", "40", "--json").stdout)
    bands = [k for k in found if k.startswith("loss_t")]
    assert bands == [f"loss_t{s:03d}_{s + 99:03d}" for s in range(0, 1000, 100)]
    assert abs(found["loss"] - sum(found[k] for k in bands) / 10) < 1e-6 and found["loss_images"] == 40


def test_a_conditional_strip_is_unconditional_unless_a_label_is_given(conditional_run):
    from conftest import gentool, png

    plain = png(gentool("interpolate", conditional_run, "--seeds", "1,2", "--steps", "3", "--sampler", "dpm++", torch_free=True).stdout)
    sevens = png(gentool("interpolate", conditional_run, "--seeds", "1,2", "--steps", "3", "--sampler", "dpm++", "--label", "7",
                         torch_free=True).stdout)
    assert plain.shape == sevens.shape and not (plain == sevens).all()
    proc = gentool("interpolate", conditional_run, "--seeds", "1,2", "--guidance", "2", torch_free=True, check=False)
    assert proc.returncode == 2 and "interpolate --guidance needs a --label" in proc.stderr
