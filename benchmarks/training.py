"""MNIST training speed of the classic 784-400-20 VAE: the PyTorch-example way against gentool.

Both train the same network (784-400-20 MLP VAE, Bernoulli BCE summed over pixels + KL, Adam 1e-3,
batch 128, shuffled) on the same uint8 images from gentool.data.load("mnist"), on the CPU with
torch's default thread count, in this one process:
- classic: as the PyTorch VAE example does it. A Dataset builds a PIL image per example and turns
  it into a float tensor with a torchvision-style ToTensor (written here; torchvision is not a
  dependency); DataLoader(batch_size=128, shuffle=True, num_workers=0), which is what the example
  uses on CPU (workers would also compete with torch's threads on a small machine). Timed: the
  training loop only. Test loss as the example's test(): summed BCE + KL over the 10k test images
  (same per-example pipeline, batch 128) divided by 10k, one posterior sample per image.
- gentool: the real `gentool.train.run` (vae --arch mlp). Its epoch time is the metrics.jsonl
  "seconds" column (the training loop only); its test loss is metrics.jsonl "test_loss" (the same
  per-example -ELBO, one sample). The whole call is also timed: it adds data loading, test
  evaluation, sample grids, checkpointing and the ONNX export.
Repeat r runs both paths for --epochs epochs from seed r, alternating; the table gives medians
(s/epoch over all epochs of all repeats; whole call and test loss over repeats, so over seeds).

    .venv/bin/python benchmarks/training.py [--epochs 1] [--repeats 3] [--quick]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from common import machine, met, table
from gentool import data, train

QUICK_EXAMPLES = 6400


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor for an 8-bit PIL image: (C, H, W) float32 in [0, 1]."""
    x = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    return x.view(pic.size[1], pic.size[0], len(pic.getbands())).permute(2, 0, 1).contiguous().float().div(255)


class MNIST(Dataset):
    """uint8 images (N, 1, 28, 28) and labels, served one PIL image at a time like torchvision's MNIST."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images[:, 0], labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return to_tensor(Image.fromarray(self.images[i])), int(self.labels[i])


class VAE(nn.Module):
    """The PyTorch example's VAE, written out the usual way."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_classic(train_set, test_set, epochs: int, seed: int) -> tuple[list[float], float]:
    """Seconds of each training epoch, and the test loss after the last."""
    torch.manual_seed(seed)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(MNIST(train_set.images, train_set.labels), batch_size=128, shuffle=True, num_workers=0)
    test_loader = DataLoader(MNIST(test_set.images, test_set.labels), batch_size=128, shuffle=False, num_workers=0)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for x, _ in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss_function(recon, x, mu, logvar).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for x, _ in test_loader:
            recon, mu, logvar = model(x)
            test_loss += loss_function(recon, x, mu, logvar).item()
    return seconds, test_loss / len(test_loader.dataset)


def run_gentool(epochs: int, limit: int | None, seed: int, out: Path) -> tuple[list[float], float, float]:
    """Seconds of each training epoch as gentool reports them, the test loss, and the whole call's seconds."""
    opts = train.Options(
        model="vae", data="mnist", epochs=epochs, batch_size=128, seed=seed, out=out, device="cpu", limit=limit, hparam_args=("--arch", "mlp")
    )
    started = time.perf_counter()
    train.run(opts)
    whole = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["seconds"] for r in rows], rows[-1]["test_loss"], whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per training run")
    parser.add_argument("--repeats", type=int, default=3, help="training runs of each path")
    parser.add_argument("--quick", action="store_true", help=f"smoke mode: one run on the first {QUICK_EXAMPLES} training images")
    args = parser.parse_args()
    header = machine()  # read before the work, so that its load average shows what else is running
    repeats, limit = (1, QUICK_EXAMPLES) if args.quick else (args.repeats, None)

    train_set, test_set = data.load("mnist", "train", limit), data.load("mnist", "test")
    epoch_s = {"classic": [], "gentool": []}
    losses = {"classic": [], "gentool": []}
    whole = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            seconds, loss = run_classic(train_set, test_set, args.epochs, r)
            epoch_s["classic"] += seconds
            losses["classic"].append(loss)
            seconds, loss, call = run_gentool(args.epochs, limit, r, Path(tmp) / f"run-{r}")
            epoch_s["gentool"] += seconds
            losses["gentool"].append(loss)
            whole.append(call)

    classic_s, gentool_s = median(epoch_s["classic"]), median(epoch_s["gentool"])
    classic_loss, gentool_loss = median(losses["classic"]), median(losses["gentool"])
    speedup = classic_s / gentool_s
    rows = [
        ["classic: per-example PIL + ToTensor, DataLoader(128, shuffle, workers=0)", f"{classic_s:.2f}", "1.00x", "-", f"{classic_loss:.2f}"],
        ["gentool: train.run(vae --arch mlp), metrics.jsonl seconds", f"{gentool_s:.2f}", f"{speedup:.2f}x", f"{median(whole):.2f}", f"{gentool_loss:.2f}"],
    ]
    targets = [
        ["gentool epoch >= 1.5x faster than classic", f"{speedup:.2f}x", met(speedup >= 1.5)],
        ["gentool test loss <= classic", f"{gentool_loss:.2f} vs {classic_loss:.2f}", met(gentool_loss <= classic_loss)],
    ]
    print(header)
    print(f"MNIST, {len(train_set)} training images, {args.epochs} epoch(s) per run, {repeats} run(s) of each path, "
          f"torch threads {torch.get_num_threads()}\n")
    print(table(["path", "train s/epoch", "speed-up", "whole call s", f"test loss after {args.epochs} epoch(s)"], rows))
    print()
    print(table(["target", "figure", "met"], targets))


if __name__ == "__main__":
    main()
