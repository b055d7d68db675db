"""Torch-free inference: ONNX graphs with gentool metadata, run by onnxruntime, fed by numpy.

Never imports torch or onnx. See `artifact` (finding graphs, sessions, providers) and `pipelines`
(what each verb computes).
"""
