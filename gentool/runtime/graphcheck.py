"""What gentool checks in an ONNX file before it runs it: the operators (a hand-made graph could loop
for ever), and its metadata, inputs and outputs against what the sampler module that runs its role
declares (`gentool.runtime.declaration`), in the terms of the file's own metadata.

The operators are read from the file's protobuf directly (a few wire-format rules: no onnx package
at run time): every node of the main graph and of any subgraph held in an attribute, and of any
local function. Only the standard domain and the operators below pass: what gentool's exporter
emits for its families, and their near kin (normalisations, activations, shape arithmetic) that
families to come will need; no control flow (Loop, Scan, If), no random ops, no sequences, no
custom domains. `tests/test_conformance.py` checks every family's graphs against this list, so a
family that needs another operator adds it here knowingly.
"""

from __future__ import annotations

import numpy as np

from gentool.errors import UsageError
from gentool.runtime.declaration import ONNX_TYPES, Role, Sampler, Tensor, positive_int

ALLOWED = frozenset("""
Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Celu Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos CumSum DepthToSpace Div Dropout Einsum Elu Equal Erf Exp Expand Flatten Floor Gather
GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GroupNormalization
HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax MatMul Max MaxPool Mean Min Mish Mod Mul Neg Not Or Pad Pow PRelu Range Reciprocal ReduceL2
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
Round Selu Shape Sigmoid Sign Sin Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub
Sum Tanh Tile TopK Transpose Trilu Unsqueeze Where Xor
""".split())

# ModelProto.graph, .functions; GraphProto.node; NodeProto.op_type, .attribute, .domain;
# AttributeProto.g, .graphs; FunctionProto.node
_MODEL_GRAPH, _MODEL_FUNCTIONS, _GRAPH_NODE = 7, 25, 1
_NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTR_GRAPH, _ATTR_GRAPHS, _FUNCTION_NODE = 6, 11, 7


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, (start, end)) of each length-delimited field of one message; others skipped."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("a field runs past its message")
            yield key >> 3, (i, i + n)
            i += n
        else:
            raise ValueError(f"wire type {wire}")


def _nodes(buf: bytes, span: tuple[int, int], node_field: int):
    for field, node in _fields(buf, *span):
        if field != node_field:
            continue
        op, domain = "", ""
        for f, (a, b) in _fields(buf, *node):
            if f == _NODE_OP:
                op = buf[a:b].decode(errors="replace")
            elif f == _NODE_DOMAIN:
                domain = buf[a:b].decode(errors="replace")
            elif f == _NODE_ATTRIBUTE:
                for g, sub in _fields(buf, a, b):
                    if g in (_ATTR_GRAPH, _ATTR_GRAPHS):
                        yield from _nodes(buf, sub, _GRAPH_NODE)
        yield domain, op


def operators(buf: bytes) -> set[tuple[str, str]]:
    """(domain, op_type) of every node in an ONNX model's bytes."""
    found = set()
    for field, span in _fields(buf, 0, len(buf)):
        if field == _MODEL_GRAPH:
            found |= set(_nodes(buf, span, _GRAPH_NODE))
        elif field == _MODEL_FUNCTIONS:
            found |= set(_nodes(buf, span, _FUNCTION_NODE))
    return found


def check_operators(buf: bytes, source: str) -> None:
    try:
        ops = operators(buf)
    except (ValueError, IndexError):
        raise UsageError(f"'{source}' is not a readable ONNX model") from None
    foreign = sorted(f"{d}.{op}" if d not in ("", "ai.onnx") else op for d, op in ops if d not in ("", "ai.onnx") or op not in ALLOWED)
    if foreign:
        raise UsageError(f"'{source}' uses operators gentool does not run ({', '.join(foreign[:5])}): it was not exported by gentool")


# what every graph's metadata may hold, whatever its role, and the form it must have
COMMON_METADATA = {
    "model": lambda v, meta: isinstance(v, str),
    "role": lambda v, meta: isinstance(v, str),
    "image_shape": lambda v, meta: isinstance(v, list) and len(v) == 3 and all(map(positive_int, v)) and v[0] in (1, 3),
    "classes": lambda v, meta: v is None or (isinstance(v, list) and 0 < len(v) <= 100_000 and all(isinstance(c, str) for c in v)),
}


def check_metadata(meta: dict, samplers: list[Sampler], source: str) -> None:
    """Each metadata value the runtime reads has the form it expects (a lie is a usage error, not a
    crash): the common keys, and every key a sampler module declares, whichever role the graph has."""
    checks = [COMMON_METADATA.items(), *(sampler.metadata.items() for sampler in samplers)]
    for key, valid in (pair for group in checks for pair in group):
        if meta.get(key) is not None and not valid(meta[key], meta):
            raise UsageError(f"'{source}': metadata gentool.{key} = {str(meta[key])[:60]} does not fit this {meta.get('model')} model")


def check_inputs(inputs, meta: dict, role: str, declared: Role, source: str) -> None:
    """The inputs the role declares, each of its rank and dtype, with the sizes the metadata gives
    (dynamic axes pass)."""
    shapes = {i.name: (i.shape, i.type) for i in inputs}
    expected = {t.name: t for t in declared.inputs}
    required = [t.name for t in declared.inputs if not t.optional]
    if not set(required) <= set(shapes) <= set(expected):
        raise UsageError(f"'{source}': a {role} graph takes {', '.join(required)}; this one takes {', '.join(shapes)}")
    for name, (shape, kind) in shapes.items():
        tensor = expected[name]
        if kind != ONNX_TYPES[tensor.dtype]:
            raise UsageError(f"'{source}': input {name} is {kind}, not the {tensor.dtype} a {role} graph takes")
        if not _fits(shape, tensor, meta):
            raise UsageError(f"'{source}': input {name} has shape {shape}, which does not fit its metadata")


def _fits(shape, tensor: Tensor, meta: dict) -> bool:
    return len(shape) == tensor.rank and all(not isinstance(s, int) or w is None or s == w for s, w in zip(shape, tensor.sizes(meta)))


def _matches(shapes: dict, form: tuple[Tensor, ...], meta: dict) -> bool:
    """Whether outputs of these shapes (by name) are of `form`."""
    if len(form) == 1 and form[0].name == "*":
        return len(shapes) == 1 and _fits(next(iter(shapes.values())), form[0], meta)
    return set(shapes) == {t.name for t in form} and all(_fits(shapes[t.name], t, meta) for t in form)


def check_outputs(outputs, meta: dict, role: str, declared: Role, source: str) -> None:
    """The outputs match one of the forms the role declares."""
    shapes = {o.name: o.shape for o in outputs}
    if any(_matches(shapes, form, meta) for form in declared.outputs):
        return
    described = " or ".join(f"one batch {form[0].form(meta)}" if form[0].name == "*" else
                            " and ".join(f"{t.name} {t.form(meta)}" for t in form) for form in declared.outputs)
    raise UsageError(f"'{source}': a {role} graph gives {described}; this one gives {shapes}")


# The most values one row of an output may hold: a 512x512 RGB image is 786,432; more would be a
# graph asking for memory it was never meant to need.
MAX_ROW_VALUES = 2**22


def check_values(outputs: dict, rows: int, meta: dict, role: str, declared: Role, source: str) -> None:
    """What a graph actually gave, against its role and metadata, as `check_outputs` checks its
    static shapes (which may be dynamic and say nothing): one of the declared forms with every size
    the metadata fixes, and besides `rows` rows each, none empty or oversized."""
    shapes = {name: values.shape for name, values in outputs.items()}
    sized = all(s and s[0] == rows and 0 < int(np.prod(s[1:])) <= MAX_ROW_VALUES for s in shapes.values())
    if not sized or not any(_matches(shapes, form, meta) for form in declared.outputs):
        given = ", ".join(f"{name} {tuple(s)}" for name, s in shapes.items())
        raise UsageError(f"'{source}': the {role} graph gave {given} for {rows} rows "
                         f"(at most {MAX_ROW_VALUES:,} values a row): it does not fit its metadata")
