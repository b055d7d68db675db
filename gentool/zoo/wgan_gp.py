"""Wasserstein GAN with gradient penalty (Gulrajani et al. 2017), on the DCGAN networks of `gan`.

The critic (the discriminator without BatchNorm: the penalty is per example) scores images; it
minimises E[D(G(z))] - E[D(x)] + lambda * E[(||grad D(x_hat)|| - 1)^2] at points x_hat on the lines
between real and generated images (a keyed uniform per example, so the penalty is the same split
over processes), and the generator minimises -E[D(G(z))], one step for every `n_critic` critic
steps. Logged: the critic's estimate of the Wasserstein distance, E[D(x)] - E[D(G(z))], which
falls as the generator improves, and the penalty. Adam 1e-4 with betas (0.5, 0.9).
"""

from __future__ import annotations

import torch

from gentool.errors import UsageError
from gentool.noise import rand_like
from gentool.zoo import register
from gentool.zoo.gan import Adversarial


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, labels: tuple) -> torch.Tensor:
    """E[(||grad_x D(x)|| - 1)^2] at random points between real and fake, kept differentiable (the
    critic's step backpropagates through the gradient)."""
    t = rand_like(real[:, :1, :1, :1])
    with torch.enable_grad():  # the per-epoch test loss runs under no_grad
        between = (t * real + (1 - t) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(between, *labels).sum(), between, create_graph=torch.is_grad_enabled())
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@register
class WGANGP(Adversarial):
    """WGAN-GP: the GAN generator against a critic with a gradient penalty."""

    name = "wgan-gp"
    judge = "critic"
    batch_norm = False
    shown_losses = {"critic_wasserstein": "W"}  # the critic's estimate of the Wasserstein distance
    betas = (0.5, 0.9)
    defaults = {"latent_dim": 100, "width": 32, "hidden": 512, "conditional": False, "ema": 0.999, "gp": 10.0, "n_critic": 5}
    train_defaults = {"epochs": 10, "batch_size": 64, "lr": 1e-4, "lr_schedule": "constant"}

    def __init__(self, image_shape, hparams, num_classes=None):
        super().__init__(image_shape, hparams, num_classes)
        if self.hparams["n_critic"] < 1 or self.hparams["gp"] < 0:
            raise UsageError(f"--n-critic must be at least 1 and --gp at least 0, got {self.hparams['n_critic']} and {self.hparams['gp']}")

    def phases(self, step):
        return ["critic", "generator"] if step % self.hparams["n_critic"] == self.hparams["n_critic"] - 1 else ["critic"]

    def phase_losses(self, phase, nets, x, y, step):
        critic, real, labels = nets["critic"], x * 2 - 1, self.labels(y)
        if phase == "critic":
            with torch.no_grad():
                fake = self.fake(nets, x, y)
            distance = critic(real, *labels).mean() - critic(fake, *labels).mean()
            penalty = gradient_penalty(critic, real, fake, labels)
            return {"loss": self.hparams["gp"] * penalty - distance, "wasserstein": distance, "gradient_penalty": penalty}
        return {"loss": -critic(self.fake(nets, x, y), *labels).mean()}
