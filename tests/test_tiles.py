"""Large images go through `denoise` and `upscale` in tiles with a halo: the same result as one pass."""

import numpy as np
import pytest
import torch

from gentool import zoo
from gentool.export import export
from gentool.graphs import TorchGraphs
from gentool.runtime import image_to_image
from gentool.runtime.artifact import Artifact
from gentool.zoo.blocks import UNet
from gentool.zoo.dae import LevelEstimator

ONE_PASS = 10**6


def counting(graphs):
    """graphs whose run records the height and width of every input it is given."""
    seen, run = [], graphs.run
    graphs.run = lambda role, feeds: (seen.append(feeds["x"].shape[2:]), run(role, feeds))[1]
    return seen


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_unet_radius_is_what_gradients_reach(depth):
    """An output pixel's gradient reaches exactly `radius` pixels on some side, never further."""
    torch.manual_seed(0)
    unet = UNet(1, 4, depth)
    for p in unet.parameters():
        torch.nn.init.normal_(p, 0, 0.5)
    reach = 0
    for c in range(40, 44):  # every phase of the stride-4 grid
        x = torch.rand(1, 1, 96, 96, requires_grad=True)
        unet(x)[0, 0, c, c].backward()
        ys, xs = torch.nonzero(x.grad[0, 0], as_tuple=True)
        reach = max(reach, int((ys - c).abs().max()), int((xs - c).abs().max()))
    assert reach == unet.radius


def test_level_estimator_radius():
    torch.manual_seed(0)
    estimator = LevelEstimator(1)
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    estimator(x)[0, 0, 8, 8].backward()  # the map position of input block 32..35
    ys, _ = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert 32 - int(ys.min()) == LevelEstimator.RADIUS and int(ys.max()) - 35 <= LevelEstimator.RADIUS


@pytest.fixture(scope="module")
def blind_dae(tmp_path_factory):
    """An untrained blind dae (level estimator + FiLM U-Net, depth 1) with perturbed weights, and its export."""
    torch.manual_seed(0)
    model = zoo.get("dae")((1, 28, 28), {"width": 4, "depth": 1})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # FiLM starts as the identity: make the level matter
    out = tmp_path_factory.mktemp("blind")
    export(model, {"model": "dae"}, out)
    return model, out


def test_blind_dae_exports_a_level_estimator(blind_dae):
    model, out = blind_dae
    art = Artifact(str(out), "cpu")
    assert art.roles == ["denoiser", "level_estimator"] and art.input_names("denoiser") == ["x", "level"]
    assert art.meta["halo"] == model.denoiser.unet.radius == 19
    x = np.random.default_rng(0).random((3, 1, 20, 36), np.float32)
    with torch.no_grad():
        expected = model.denoiser(torch.from_numpy(x)).numpy()  # the training module, estimating in one pass
    assert np.abs(image_to_image.denoise_batch(art, x) - expected).max() < 1e-5


@pytest.mark.parametrize("side", ["torch", "onnx"])
def test_tiles_equal_one_pass_for_a_blind_denoiser(blind_dae, side):
    model, out = blind_dae
    graphs = TorchGraphs(model, {"model": "dae"}) if side == "torch" else Artifact(str(out), "cpu")
    image = np.random.default_rng(1).random((3, 70, 93), np.float32)
    one = image_to_image.denoise(graphs, image, tile=ONE_PASS)
    seen = counting(graphs)
    tiled = image_to_image.denoise(graphs, image, tile=16)
    assert tiled.shape == image.shape and np.abs(tiled - one).max() < 1e-4
    assert len(seen) == 2 * 5 * 6 and max(max(s) for s in seen) <= 16 + 2 * 20  # both graphs, 5x6 tiles each
    graphs.meta["halo"] = 4  # too little context: the test can tell
    assert np.abs(image_to_image.denoise(graphs, image, tile=16) - one).max() > 1e-3


def test_tiles_equal_one_pass_for_the_bundled_models():
    image = np.random.default_rng(2).random((1, 150, 133), np.float32)
    denoiser = Artifact(str(image_to_image.bundled_denoiser()), "cpu")
    assert np.abs(image_to_image.denoise(denoiser, image, tile=48) - image_to_image.denoise(denoiser, image, tile=ONE_PASS)).max() < 1e-4
    upscaler = Artifact(str(image_to_image.bundled_upscaler(2)), "cpu")
    one = image_to_image.upscale(upscaler, image, tile=ONE_PASS)
    seen = counting(upscaler)
    tiled = image_to_image.upscale(upscaler, image, tile=32)
    assert tiled.shape == (1, 300, 266) and np.abs(tiled - one).max() < 1e-4 and len(seen) == 5 * 5


def test_default_tiles_bound_the_work_of_one_run():
    """A 1100 x 600 image: no graph run sees more than a default tile and its halo."""
    upscaler = Artifact(str(image_to_image.bundled_upscaler(2)), "cpu")
    seen = counting(upscaler)
    out = image_to_image.upscale(upscaler, np.zeros((1, 1100, 600), np.float32))
    assert out.shape == (1, 2200, 1200) and len(seen) == 3 * 2
    assert max(max(s) for s in seen) <= image_to_image.TILE + 2 * upscaler.meta["halo"] + 2
