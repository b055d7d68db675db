"""torch -> ONNX, one file per graph role, with gentool metadata and a parity check.

Each graph is exported with a batch of 2 and a dynamic batch axis (and any other dynamic axes it
names, e.g. a denoiser's height and width), checked with `onnx.checker`, then run by onnxruntime on
a batch of 3 fixed inputs (other dynamic axes one multiple longer) and compared with torch; past the
role's tolerance the export fails and nothing is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from gentool.errors import GentoolError
from gentool.files import atomic_write

OPSET = 18


@contextlib.contextmanager
def _quiet():
    """The exporter warns and logs about things that do not concern our graphs (e.g. torchvision ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def metadata(model, meta: dict, role: str) -> dict[str, str]:
    import onnxruntime

    import gentool

    return {
        "gentool.model": meta["model"],
        "gentool.role": role,
        "gentool.version": gentool.__version__,
        "gentool.image_shape": ",".join(map(str, model.image_shape)),
        "gentool.value_range": "0,1",
        "gentool.data": meta.get("data", ""),
        "gentool.opset": str(OPSET),
        "gentool.onnxruntime_tested": onnxruntime.__version__,
        **{f"gentool.{k}": v for k, v in model.graph_metadata().items()},
    }


def _to_onnx(graph, opset: int):
    import onnx

    dims = {}
    for axis, multiple in graph.dynamic_axes.items():
        dim = torch.export.Dim("batch" if axis == 0 else f"axis{axis}", min=1)
        dims[axis] = dim if multiple == 1 else multiple * dim
    with _quiet():
        program = torch.onnx.export(
            graph.module,
            graph.inputs,
            input_names=graph.input_names,
            output_names=graph.output_names,
            dynamic_shapes=tuple(dict(dims) for _ in graph.inputs),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto


def _parity_shape(graph, t: torch.Tensor) -> tuple[int, ...]:
    """Batch 3, and every other dynamic axis one multiple longer than traced, proving them dynamic."""
    return (3, *(s + graph.dynamic_axes.get(axis, 0) for axis, s in enumerate(t.shape) if axis > 0))


def _max_difference(graph, proto) -> float:
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(_parity_shape(graph, t), generator=generator) if t.is_floating_point() else t[:1].repeat(3, *[1] * (t.dim() - 1))
        for t in graph.inputs
    ]
    with torch.no_grad():
        expected = graph.module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(graph.input_names, inputs)})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got))


def export(model, meta: dict, out_dir: Path, opset: int = OPSET) -> dict[str, float]:
    """Write `<role>.onnx` for every graph of `model` into out_dir; returns role -> max abs difference."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    protos, differences = {}, {}
    for role, graph in model.graphs().items():
        graph.module.eval()
        proto = _to_onnx(graph, opset)
        differences[role] = _max_difference(graph, proto)
        if differences[role] > graph.tolerance:
            raise GentoolError(
                f"export of '{role}' failed its parity check: onnxruntime differs from torch by "
                f"{differences[role]:.2e} (tolerance {graph.tolerance:.0e})"
            )
        for key, value in metadata(model, meta, role).items():
            proto.metadata_props.add(key=key, value=value)
        protos[role] = proto
    for role, proto in protos.items():
        atomic_write(out_dir / f"{role}.onnx", proto.SerializeToString())
    return differences
