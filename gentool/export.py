"""torch -> ONNX, one file per graph role, with gentool metadata and a parity check.

Each graph is exported with a batch of 2, one batch axis shared by all its inputs and any other
dynamic axes an input names (e.g. a denoiser's height and width), checked with `onnx.checker`, then
run by onnxruntime on a batch of 3 (other dynamic axes one multiple longer) of fresh inputs: floats
uniform in [0, 1), integers below their `int_bounds`, distinct across the rows where the bound allows. It is compared
with torch; past the role's tolerance, or on a non-finite output, the export fails and nothing is
written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from gentool.errors import GentoolError
from gentool.files import atomic_path
from gentool.graphs import metadata

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


def _to_onnx(graph, opset: int):
    import onnx

    batch = torch.export.Dim("batch", min=1)
    shapes = []
    for name in graph.input_names:
        dims = {0: batch}
        for axis, multiple in graph.axes(name).items():
            if axis:
                dims[axis] = multiple * torch.export.Dim(f"{name}_axis{axis}", min=1)
        shapes.append(dims)
    with _quiet():
        program = torch.onnx.export(
            graph.module, graph.inputs, input_names=graph.input_names, output_names=graph.output_names,
            dynamic_shapes=tuple(shapes), opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto


def parity_inputs(graph, batch: int = 3) -> list[torch.Tensor]:
    """Fresh inputs: `batch` rows, every other dynamic axis one multiple longer than traced."""
    generator = torch.Generator().manual_seed(0)
    out = []
    for name, t in zip(graph.input_names, graph.inputs):
        extra = graph.axes(name)
        shape = (batch, *(s + (extra.get(axis, 0) if axis else 0) for axis, s in enumerate(t.shape) if axis))
        if t.is_floating_point():
            out.append(torch.rand(shape, generator=generator, dtype=t.dtype))
        else:
            if name not in graph.int_bounds:
                raise GentoolError(f"integer input '{name}' has no bound in Graph.int_bounds")
            bound = graph.int_bounds[name]
            rows = torch.randperm(max(bound, batch), generator=generator)[:batch] % bound  # distinct where the bound allows
            out.append(rows.view(-1, *[1] * (len(shape) - 1)).expand(shape).to(t.dtype).contiguous())
    return out


def _max_difference(graph, proto) -> float:
    import onnxruntime

    inputs = parity_inputs(graph)
    with torch.no_grad():
        expected = graph.module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(graph.input_names, inputs)})
    differences = [np.abs(e.numpy() - g) for e, g in zip(expected, got)]
    return max(float(d.max()) if np.isfinite(d).all() else float("inf") for d in differences)


def origin(model, meta: dict) -> dict:
    """Which checkpoint graphs come from: a hash of the weights, with the epoch and step. Every graph
    of an export carries it, and the runtime refuses to use graphs of different origins together."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return {"weights": digest.hexdigest()[:16], "epoch": meta.get("epoch"), "step": meta.get("step")}


def export(model, meta: dict, out_dir: Path, opset: int = OPSET) -> dict[str, float]:
    """Write `<role>.onnx` for every graph of `model` into out_dir; returns role -> max abs difference.

    All graphs are checked and written to temporary files before any replaces a file of out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    source = origin(model, meta)
    protos, differences = {}, {}
    for role, graph in model.graphs().items():
        graph.module.eval()
        proto = _to_onnx(graph, opset)
        differences[role] = _max_difference(graph, proto)
        if not differences[role] <= graph.tolerance:
            raise GentoolError(
                f"export of '{role}' failed its parity check: onnxruntime differs from torch by "
                f"{differences[role]:.2e} (tolerance {graph.tolerance:.0e})"
            )
        for key, value in {**metadata(model, meta, role), "origin": source}.items():
            proto.metadata_props.add(key=f"gentool.{key}", value=json.dumps(value))
        protos[role] = proto
    with contextlib.ExitStack() as stack:
        for role, proto in protos.items():
            stack.enter_context(atomic_path(out_dir / f"{role}.onnx")).write_bytes(proto.SerializeToString())
    return differences


def export_run(spec: str, out: Path | None = None, opset: int | None = None) -> Path:
    """`gentool export RUN`: the graphs of a run (or checkpoint, or a model name's newest run) into
    `out` (default: beside the checkpoint), each parity difference noted on stderr; returns `out`."""
    from gentool import checkpoint, console, runs

    path = runs.resolve(spec, checkpoint.WEIGHTS, "a checkpoint")
    model, meta = checkpoint.load(path)
    target = out or (path if path.is_dir() else path.parent)
    for role, diff in export(model, meta, target, opset or OPSET).items():
        console.err(f"{role}: {target / (role + '.onnx')}  max |torch - onnxruntime| = {diff:.1e}")
    return target
