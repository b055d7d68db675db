"""The issue's quality floors, measured the way the README reports them (minutes of CPU: `-m slow`)."""

import json

import pytest

from conftest import gentool

pytestmark = pytest.mark.slow


def train_and_evaluate(tmp_path, *args):
    run = tmp_path / "run"
    gentool("train", *args, "--data", "mnist", "--out", run)
    return json.loads(gentool("evaluate", run, "--json").stdout)


def test_classic_mlp_vae_matches_the_pytorch_example(tmp_path):
    assert train_and_evaluate(tmp_path, "vae", "--arch", "mlp")["neg_elbo_nats"] <= 106


def test_conv_vae(tmp_path):
    result = train_and_evaluate(tmp_path, "vae")
    assert result["neg_elbo_nats"] <= 100 and result["iw_nll_nats"] <= 96


def test_conv_ae(tmp_path):
    assert train_and_evaluate(tmp_path, "ae")["psnr_db"] >= 20
