"""Decoder throughput, PyTorch eager against onnxruntime, on the same graph.

Measured: images/s of the VAE decoder graph (z -> sigmoid(logits), the module gentool exports) for
the default conv VAE and the mlp VAE (28x28x1, z=20), at batch 1 and 256. The torch side runs the
module under torch.inference_mode() with torch's default thread count; the onnxruntime side runs
the .onnx that gentool.export.export wrote from that same module, on CPUExecutionProvider with
default session options. Weights are random init (seed 0): speed does not depend on their values.

Each cell: a few warm-up calls, then calls until the time budget is spent, split into rounds that
alternate torch and onnxruntime so that noise on a shared machine hits both; images/s is the batch
divided by the median time per call.

    .venv/bin/python benchmarks/inference.py [--seconds 2] [--quick]
"""

import argparse
import tempfile
import time
from statistics import median

import numpy as np
import onnxruntime
import torch

from common import machine, met, table
from gentool import zoo
from gentool.export import export

ROUNDS = 4
WARMUP_CALLS = 3


def call_times(fn, seconds: float) -> list[float]:
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def decoders(arch: str, tmp: str):
    """The torch decoder module and an onnxruntime session of its export."""
    torch.manual_seed(0)
    model = zoo.get("vae")((1, 28, 28), {"arch": arch})
    export(model, {"model": "vae", "data": "mnist"}, f"{tmp}/{arch}")
    session = onnxruntime.InferenceSession(f"{tmp}/{arch}/decoder.onnx", providers=["CPUExecutionProvider"])
    return model.graphs()["decoder"].module, session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per backend and cell")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 0.3 s per cell")
    args = parser.parse_args()
    header = machine()  # read before the work, so that its load average shows what else is running
    budget = 0.3 if args.quick else args.seconds

    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for arch in ("conv", "mlp"):
            module, session = decoders(arch, tmp)
            for batch in (1, 256):
                z = np.random.default_rng(0).standard_normal((batch, 20), dtype=np.float32)
                z_torch = torch.from_numpy(z)
                runners = {"torch": lambda: module(z_torch), "ort": lambda: session.run(None, {"z": z})}
                times = {name: [] for name in runners}
                for fn in runners.values():
                    for _ in range(WARMUP_CALLS):
                        fn()
                for _ in range(ROUNDS):
                    for name, fn in runners.items():
                        times[name] += call_times(fn, budget / ROUNDS)
                eager, ort = (batch / median(t) for t in times.values())
                rows.append([arch, batch, f"{eager:,.0f}", f"{ort:,.0f}", f"{ort / eager:.2f}x", ">= 1.5x", met(ort >= 1.5 * eager)])

    print(header)
    print(f"torch threads {torch.get_num_threads()}; {budget:g} s per backend and cell in {ROUNDS} alternating rounds; "
          "random-init weights\n")
    print(table(["vae decoder", "batch", "torch eager img/s", "onnxruntime img/s", "ort / torch", "target", "met"], rows))


if __name__ == "__main__":
    main()
