"""One-class MNIST anomaly detection (the protocol of Ruff et al. 2018) for one gentool model.

For each digit d: `gentool train MODEL --data mnist --classes d` (the ~6,000 training images of d),
then `gentool evaluate --anomaly`: every image of the 10,000-image test split is scored (the run's
`anomaly_score`: -ELBO for a Bernoulli VAE, else reconstruction MSE) and the AUROC of the scores
separates the other nine digits (anomalous) from d. The table gives it per digit, with Deep SVDD's
(Ruff et al. 2018, Table 1) beside it, and the mean over the ten digits.

    .venv/bin/python benchmarks/anomaly.py ae [--epochs 5] [--runs DIR] [model options, e.g. --arch mlp]

Runs already in DIR (`<model>-digit<d>`) are reused, so an interrupted benchmark picks up where it
stopped; use a new DIR for other settings.
"""

import argparse
from pathlib import Path

from common import machine, met, table
from gentool import train
from gentool.anomaly import evaluate_anomaly
from gentool.checkpoint import WEIGHTS

DEEP_SVDD = [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5]
TARGET_MEAN = 0.92


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the model's)")
    parser.add_argument("--runs", type=Path, default=Path("runs/anomaly"), help="where the ten runs go")
    parser.add_argument("--device", default="auto")
    args, model_options = parser.parse_known_args()
    header = machine()

    rows, aurocs = [], []
    for digit in range(10):
        run = args.runs / f"{args.model}-digit{digit}"
        if not any(run.glob("*.onnx")):  # not trained to the end yet
            resume = run if (run / WEIGHTS).exists() else None
            train.run(train.Options(model=args.model, data="mnist", classes=str(digit), epochs=args.epochs, out=run,
                                    resume=resume, device=args.device, hparam_args=tuple(model_options)))
        result = evaluate_anomaly(run, device=args.device)
        aurocs.append(result["auroc"])
        rows.append([digit, f"{result['auroc']:.4f}", f"{DEEP_SVDD[digit] / 100:.3f}", result["anomaly_score"]])
        print(f"digit {digit}: auroc {result['auroc']:.4f}", flush=True)
    mean = sum(aurocs) / len(aurocs)
    rows.append(["mean", f"{mean:.4f}", f"{sum(DEEP_SVDD) / 1000:.3f}", f">= {TARGET_MEAN}: {met(mean >= TARGET_MEAN)}"])

    print(header)
    print(f"{' '.join([args.model, *model_options])}, epochs {args.epochs or 'default'}; one run per digit, trained on "
          "that digit's MNIST training images; AUROC on the full test split (other digits = positives)\n")
    print(table(["normal digit", f"gentool {args.model} AUROC", "Deep SVDD", "score"], rows))


if __name__ == "__main__":
    main()
