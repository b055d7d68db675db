"""The ddpm family's own promises (the conformance test covers the protocol): its loss is loss_simple
over the schedule the samplers read, and its sides and widths are checked before anything is built."""

import pytest
import torch

from gentool import schedule, zoo
from gentool.errors import UsageError


@pytest.mark.parametrize("schedule_name", schedule.SCHEDULES)
def test_the_loss_is_loss_simple_over_the_samplers_schedule(schedule_name):
    """E ||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)||^2 with x0 = 2x - 1, t uniform
    over the T steps and abar the runtime's own table."""
    model = zoo.get("ddpm")((1, 28, 28), {"width": 8, "schedule": schedule_name}, None)
    abar = torch.tensor(schedule.alphas_cumprod(schedule_name), dtype=torch.float32)
    assert torch.equal(model.abar, abar)
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(3)
    got = model.losses(x)["loss"]
    torch.manual_seed(3)
    t = (torch.rand(6) * 1000).long()
    eps = torch.randn_like(x)
    a = abar[t].view(-1, 1, 1, 1)
    expected = ((model.net(a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * eps, t) - eps) ** 2).mean()
    assert torch.allclose(got, expected)
    assert model.graph_metadata() == {"schedule": schedule_name, "diffusion_steps": 1000}


@pytest.mark.parametrize("shape, hparams, message", [((1, 30, 30), {}, "needs image sides divisible by 4 (got 30x30)"),
                                                     ((1, 28, 28), {"width": 12}, "--width must be a multiple of 8")])
def test_sides_and_widths_are_checked(shape, hparams, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        zoo.get("ddpm")(shape, hparams, None)
