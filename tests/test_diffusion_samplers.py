"""The diffusion schedules and samplers, torch-free, against what is known exactly: for data that is a
single Gaussian N(mu, s^2) the best noise estimate is known in closed form, so every sampler must
land on that Gaussian, within a tolerance that shrinks with its steps as fast as its order says."""

import math

import numpy as np
import pytest

from gentool import schedule
from gentool.runtime import diffusion

MU, S = 0.3, 0.5


def exact_eps(abar: np.ndarray, mu: float = MU, s: float = S):
    """E[eps | x_t] when x_0 ~ N(mu, s^2): sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)."""
    def eps(x, t):
        a = abar[t]
        return math.sqrt(1 - a) * (x - math.sqrt(a) * mu) / (a * s * s + 1 - a)

    return eps


def land(name, steps, schedule_name="linear", eta=0.0, n=20_000, seed=0):
    abar = schedule.alphas_cumprod(schedule_name)
    rng = np.random.default_rng(seed)
    walk = diffusion.stepper(name, abar, steps, eta, clip=None)
    return diffusion.run(exact_eps(abar), walk, rng.standard_normal(n), rng)


# (sampler, steps, eta, the bound on |std - S| at those steps: first order for DDIM, second for DPM-Solver++)
CASES = [("ddpm", None, 0.0, 0.015), *[("ddim", k, 0.0, 2 / k) for k in (10, 20, 50)], ("ddim", 50, 1.0, 4 / 50),
         *[("dpm++", k, 0.0, 15 / k**2) for k in (10, 20)]]


@pytest.mark.parametrize("schedule_name", schedule.SCHEDULES)
@pytest.mark.parametrize("name, steps, eta, bound", CASES)
def test_every_sampler_lands_on_the_data_gaussian(name, steps, eta, bound, schedule_name):
    x = land(name, steps, schedule_name, eta, n=20_000 if name != "ddpm" else 4_000)
    assert abs(x.mean() - MU) < 4 * S / math.sqrt(len(x)) + 0.002
    assert abs(x.std() - S) < bound


@pytest.mark.parametrize("schedule_name", schedule.SCHEDULES)
def test_more_steps_land_closer_and_the_second_order_solver_closer_still(schedule_name):
    error = {(name, k): abs(land(name, k, schedule_name).std() - S) for name in ("ddim", "dpm++") for k in (10, 20, 40)}
    for name in ("ddim", "dpm++"):
        assert error[name, 10] > error[name, 20] > error[name, 40]
    assert error["dpm++", 20] < error["ddim", 20] and error["dpm++", 40] < error["ddim", 40]


@pytest.mark.parametrize("name, steps, eta", [("ddpm", None, 0.0), ("ddim", 10, 0.0), ("ddim", 10, 0.5), ("dpm++", 10, 0.0)])
def test_one_step_interface(name, steps, eta):
    """Every sampler walks down from the last timestep without repeating one, draws its randomness
    from the generator it is given only (the same seed: the same images), and a deterministic one
    draws none."""
    abar = schedule.alphas_cumprod("linear")
    walk = diffusion.stepper(name, abar, steps, eta)
    t = walk.timesteps
    assert t[0] == len(abar) - 1 and (np.diff(t) < 0).all() and t[-1] >= 0 and len(t) == (steps or len(abar))
    noise = np.random.default_rng(1).standard_normal((4, 1, 3, 3))
    draws = [diffusion.run(exact_eps(abar), diffusion.stepper(name, abar, steps, eta), noise, np.random.default_rng(seed)) for seed in (7, 7, 8)]
    assert np.array_equal(draws[0], draws[1]) and draws[0].shape == noise.shape
    assert np.array_equal(draws[0], draws[2]) == (name != "ddpm" and eta == 0)


def test_clipping_keeps_the_data_estimate_in_range():
    abar = schedule.alphas_cumprod("linear")
    far = lambda x, t: -np.ones_like(x) * 5  # noqa: E731  an estimate that points far outside [-1, 1]
    for name in diffusion.SAMPLERS:
        x = diffusion.run(far, diffusion.stepper(name, abar, 10, clip=1.0), np.zeros(8), np.random.default_rng(0))
        assert np.abs(x).max() <= 1 + 1e-9


def test_trailing_spacing_ends_at_the_last_timestep_and_never_repeats():
    assert schedule.trailing(1000, 10).tolist() == list(range(999, 98, -100))
    assert schedule.trailing(1000, 3).tolist() == [999, 666, 332]  # 1000 / 3 is no whole number
    assert schedule.trailing(1000, 1000).tolist() == list(range(999, -1, -1))
    assert schedule.trailing(10, 7).tolist() == [9, 8, 6, 5, 3, 2, 0]
    with pytest.raises(ValueError):
        schedule.trailing(10, 11)


@pytest.mark.parametrize("schedule_name", schedule.SCHEDULES)
def test_the_forward_process_ends_in_standard_normal_noise(schedule_name):
    """q(x_{T-1} | x_0) on real digits (scaled to [-1, 1]): pixel statistics of N(0, 1)."""
    from gentool import data

    x0 = data.load("mnist", "test", 2000).images.astype(np.float64) / 127.5 - 1
    abar = schedule.alphas_cumprod(schedule_name)
    assert abar[0] > 0.999 and abar[-1] < 1e-4 and (np.diff(abar) < 0).all()
    noisy = math.sqrt(abar[-1]) * x0 + math.sqrt(1 - abar[-1]) * np.random.default_rng(0).standard_normal(x0.shape)
    assert abs(noisy.mean()) < 0.01 and abs(noisy.std() - 1) < 0.01
    assert schedule.betas(schedule_name).max() <= 0.999


def _exact_eps_graph(tmp_path, total=1000, mu=0.0, s=0.3):
    """An `eps` graph for 1x4x4 images whose data is N(mu, s^2) in model space: the exact noise
    estimate, eps = c1[t] (x - c2[t]), its tables over the model's `total` steps."""
    import json

    import onnx
    from onnx import TensorProto, helper

    abar = schedule.alphas_cumprod("linear", total)
    c1, c2 = np.sqrt(1 - abar) / (abar * s * s + 1 - abar), np.sqrt(abar) * mu
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])
    t = helper.make_tensor_value_info("t", TensorProto.INT64, ["batch"])
    out = helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", 1, 4, 4])
    tables = [helper.make_tensor(name, TensorProto.FLOAT, [total], values.astype(np.float32)) for name, values in (("c1", c1), ("c2", c2))]
    column = helper.make_tensor("column", TensorProto.INT64, [4], [-1, 1, 1, 1])
    nodes = [helper.make_node("Gather", ["c1", "t"], ["g1"]), helper.make_node("Gather", ["c2", "t"], ["g2"]),
             helper.make_node("Reshape", ["g1", "column"], ["k1"]), helper.make_node("Reshape", ["g2", "column"], ["k2"]),
             helper.make_node("Sub", ["x", "k2"], ["d"]), helper.make_node("Mul", ["d", "k1"], ["eps"])]
    proto = helper.make_model(helper.make_graph(nodes, "exact", [x, t], [out], [*tables, column]), opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    for key, value in {"model": "ddpm", "role": "eps", "image_shape": [1, 4, 4], "schedule": "linear", "diffusion_steps": total}.items():
        proto.metadata_props.add(key=f"gentool.{key}", value=json.dumps(value))
    onnx.save(proto, tmp_path / "eps.onnx")
    return tmp_path / "eps.onnx"


@pytest.mark.parametrize("args, name, steps, eta", [(["--sampler", "ddim", "--steps", "20"], "ddim", 20, 0.0),
                                                   (["--sampler", "ddim", "--steps", "20", "--eta", "1"], "ddim", 20, 1.0),
                                                   (["--sampler", "dpm++", "--steps", "10"], "dpm++", 10, 0.0),
                                                   (["--sampler", "ddpm"], "ddpm", None, 0.0), ([], "ddim", 50, 0.0)])
def test_sample_runs_an_eps_graph_torch_free(tmp_path, args, name, steps, eta):
    """`gentool sample` on an exported noise network, with the sampler's own flags, is the sampler
    run over that network: seeded noise, the steps' draws from the same generator, the data
    estimate clipped to [-1, 1], and (x + 1) / 2 as the image (here the exact noise estimate of
    N(0, 0.3^2) data, so the images are of mean 0.5 and spread 0.15)."""
    from conftest import gentool, png

    drawn = png(gentool("sample", _exact_eps_graph(tmp_path), "-n", "400", "--nrow", "20", "--seed", "1", *args, torch_free=True).stdout)
    pixels = drawn[2:, 2:].reshape(20, 6, 20, 6)[:, :4, :, :4].transpose(0, 2, 1, 3).reshape(400, 1, 4, 4)  # the grid, unpadded
    rng = np.random.default_rng(1)
    abar = schedule.alphas_cumprod("linear")
    noise = rng.standard_normal((400, 1, 4, 4))
    expected = ((diffusion.run(exact_eps(abar, 0.0, 0.3), diffusion.stepper(name, abar, steps, eta), noise, rng) + 1) / 2).clip(0, 1)
    assert np.abs(pixels - expected).max() <= 1 / 255 + 1e-4
    if name == "ddpm":
        assert abs(pixels.mean() - 0.5) < 0.005 and abs(pixels.std() - 0.15) < 0.005


@pytest.mark.parametrize("args, message", [
    (["--sampler", "nope"], "--sampler must be one of ddpm, ddim, dpm++, got 'nope'"),
    (["--steps", "0"], "--steps must be in 1..1000 (the model's diffusion steps), got 0"),
    (["--steps", "1001"], "--steps must be in 1..1000"),
    (["--sampler", "ddpm", "--steps", "5"], "--sampler ddpm runs every one of the model's 1000 steps"),
    (["--sampler", "dpm++", "--eta", "0.5"], "--eta is DDIM's noise scale"),
    (["--eta", "2"], "--eta must be in [0, 1], got 2.0"),
    (["--truncation", "1"], "--truncation: not an option of 'sample' for this ddpm artifact (it takes --sampler, --steps, --eta, --guidance)"),
])
def test_the_sampler_flags_are_checked(tmp_path, args, message):
    from conftest import gentool

    proc = gentool("sample", _exact_eps_graph(tmp_path), *args, torch_free=True, check=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_sample_help_lists_the_diffusion_flags():
    from conftest import in_process

    shown = " ".join(in_process("sample", "--help").stdout.decode().replace("│", " ").split())
    assert "--sampler" in shown and "--eta" in shown and "models with an eps" in shown


def test_repaint_walks_down_with_its_jumps_back_up():
    path = diffusion.repaint_path(10, 5, 3)
    assert path[0] == 0 and path[-1] == 10 and all(abs(b - a) == 1 for a, b in zip(path, path[1:]))
    assert sum(b > a for a, b in zip(path, path[1:])) == 10 + 2 * 5  # position 5 (not 10, the data) jumps back twice
    assert diffusion.repaint_path(10, 1, 1) == list(range(11))


def correlated_eps(abar: np.ndarray, cov: np.ndarray):
    """E[eps | x_t] for vectors x_0 ~ N(0, cov): x0_hat = sqrt(a) cov (a cov + (1 - a) I)^-1 x_t."""
    values, vectors = np.linalg.eigh(cov)

    def eps(x, t):
        a = abar[t]
        gain = (vectors * (values * math.sqrt(a) / (a * values + 1 - a))) @ vectors.T
        return (x - math.sqrt(a) * x @ gain) / math.sqrt(1 - a)

    return eps


def test_repaint_draws_the_unknown_from_its_conditional_given_the_known():
    """Four nearly equal 'pixels' (a shared N(0, 0.25) part and a little of their own), two known:
    the completions keep the known exactly, and the unknown land near their conditional mean and
    spread given the known; pasting alone (no resampling) lands far short of that mean."""
    abar = schedule.alphas_cumprod("linear")
    cov = 0.25 * np.ones((4, 4)) + 0.01 * np.eye(4)
    keep = np.array([True, True, False, False])
    known = np.tile([0.6, 0.6, 0.0, 0.0], (2000, 1))
    mean = cov[np.ix_(~keep, keep)] @ np.linalg.solve(cov[np.ix_(keep, keep)], known[0, keep])
    spread = math.sqrt((cov[np.ix_(~keep, ~keep)] - cov[np.ix_(~keep, keep)] @ np.linalg.solve(cov[np.ix_(keep, keep)], cov[np.ix_(keep, ~keep)]))[0, 0])

    def complete(resamples):
        walk = diffusion.DDIM(abar, schedule.trailing(1000, 50), None, eta=1.0)
        return diffusion.inpaint(correlated_eps(abar, cov), walk, known, keep, diffusion.repaint_path(50, 1, resamples), np.random.default_rng(0))

    resampled, pasted = complete(4), complete(1)
    assert np.array_equal(resampled[:, keep], known[:, keep])
    assert np.abs(resampled[:, ~keep].mean(0) - mean).max() < 0.05 and np.abs(resampled[:, ~keep].std(0) - spread).max() < 0.02
    assert np.abs(pasted[:, ~keep].mean(0) - mean).min() > 0.1


def test_noise_level_is_estimated_from_the_finest_detail():
    rows, cols = np.mgrid[0:64, 0:64] / 64
    smooth = 0.5 + 0.3 * np.sin(3 * rows) * np.cos(2 * cols)
    for sigma in (0.05, 0.1, 0.25):
        noisy = smooth + sigma * np.random.default_rng(0).standard_normal((1, 64, 64))
        assert abs(diffusion.noise_level(noisy) - sigma) < 0.1 * sigma


def test_denoise_is_the_posterior_mean_at_the_noises_level(tmp_path):
    """For N(0, s^2) data (model space), one call at the timestep whose noise matches gives
    Tweedie's posterior mean, s^2 / (s^2 + (2 sigma)^2) y in model space y = 2x - 1."""
    from gentool.runtime.artifact import Artifact

    art = Artifact(str(_exact_eps_graph(tmp_path)), "cpu")
    rng = np.random.default_rng(0)
    for sigma in (0.1, 0.25):
        clean = (0.3 * rng.standard_normal((1, 4, 4)) + 1) / 2
        noisy = clean + sigma * rng.standard_normal((1, 4, 4))
        shrink = 0.09 / (0.09 + 4 * sigma**2)
        expected = (shrink * (2 * noisy - 1) + 1) / 2
        assert np.abs(diffusion.denoise(art, noisy, sigma) - expected.clip(0, 1)).max() < 0.01


def test_interpolate_goes_between_the_seeds_own_draws(tmp_path):
    """The ends of `interpolate --seeds A,B` are the images `sample --seed A` and `--seed B` draw
    first (DDIM's default steps, eta 0), and a seed with itself gives one image throughout."""
    from conftest import gentool, png

    graph = _exact_eps_graph(tmp_path)
    strip = png(gentool("interpolate", graph, "--seeds", "4,9", "--steps", "5", torch_free=True).stdout)
    ends = [png(gentool("sample", graph, "-n", "1", "--seed", seed, torch_free=True).stdout) for seed in ("4", "9")]
    cells = strip[2:6, 2:].reshape(4, 5, 6)[:, :, :4].transpose(1, 0, 2)  # 5 images of 4x4, padding 2
    assert np.array_equal(cells[0], ends[0]) and np.array_equal(cells[-1], ends[1]) and not np.array_equal(cells[0], cells[2])
    same = png(gentool("interpolate", graph, "--seeds", "4,4", "--steps", "3", torch_free=True).stdout)
    assert np.array_equal(same[2:6, 2:6], ends[0]) and np.array_equal(same[2:6, 8:12], ends[0])
    proc = gentool("interpolate", graph, "--seeds", "4,9", "--sampler", "ddpm", torch_free=True, check=False)
    assert proc.returncode == 2 and "interpolate needs a deterministic sampler" in proc.stderr


def test_complete_keeps_the_known_half_torch_free(tmp_path):
    """`complete --keep top -n 3` on a 4x4 image: three completions in a row of the grid, each with
    the input's top rows as they were; flags are checked in one line each."""
    from PIL import Image

    from conftest import gentool, png

    graph = _exact_eps_graph(tmp_path)
    image = (np.random.default_rng(2).random((4, 4)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    grid = png(gentool("complete", graph, "-", "--keep", "top", "-n", "3", "--steps", "10", stdin=(tmp_path / "in.png").read_bytes(),
                       torch_free=True).stdout)
    cells = [grid[2:6, 2 + 6 * i : 6 + 6 * i] for i in range(3)]
    for cell in cells:
        assert np.abs(cell[:2] - image[:2] / 255).max() < 1e-6
    assert not np.array_equal(cells[0][2:], cells[1][2:])
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 2:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    right = png(gentool("complete", graph, tmp_path / "in.png", "--mask", tmp_path / "mask.png", torch_free=True).stdout)
    assert np.abs(right[:, :2] - image[:, :2] / 255).max() < 1e-6 and np.abs(right[:, 2:] - image[:, 2:] / 255).max() > 0.01
    for args, message in [([], "say what to keep: --mask MASK.png"), (["--keep", "top", "--jump", "0"], "--jump must be at least 1, got 0"),
                          (["--keep", "top", "--steps", "2000"], "--steps must be in 1..1000")]:
        proc = gentool("complete", graph, tmp_path / "in.png", *args, torch_free=True, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
