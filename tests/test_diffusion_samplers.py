"""The diffusion schedules and samplers, torch-free, against what is known exactly: for data that is a
single Gaussian N(mu, s^2) the best noise estimate is known in closed form, so every sampler must
land on that Gaussian, within a tolerance that shrinks with its steps as fast as its order says."""

import math

import numpy as np
import pytest

from gentool import schedule
from gentool.runtime import diffusion

MU, S = 0.3, 0.5


def exact_eps(abar: np.ndarray):
    """E[eps | x_t] when x_0 ~ N(MU, S^2): sqrt(1 - abar) (x_t - sqrt(abar) MU) / (abar S^2 + 1 - abar)."""
    def eps(x, t):
        a = abar[t]
        return math.sqrt(1 - a) * (x - math.sqrt(a) * MU) / (a * S * S + 1 - a)

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
