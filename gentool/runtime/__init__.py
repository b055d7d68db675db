"""Torch-free inference: ONNX graphs with gentool metadata, run by onnxruntime, fed by numpy.

Never imports torch or onnx. See `artifact` (finding graphs, sessions, the checks of `graphcheck`),
`verbs` (which sampler module computes a verb: `latent`, `image_to_image`) and `quality` (sample
quality on feature networks).
"""

from pathlib import Path

# The bundled models, shipped as package data (the README says how each is built).
ASSETS = Path(__file__).resolve().parents[1] / "assets"
