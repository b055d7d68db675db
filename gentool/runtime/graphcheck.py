"""What gentool checks in an ONNX file before it runs it: the operators (a hand-made graph could loop
for ever) and the inputs its role must have, against the file's own metadata.

The operators are read from the file's protobuf directly (a few wire-format rules: no onnx package
at run time): every node of the main graph and of any subgraph held in an attribute, and of any
local function. Only the standard domain and the operators below pass: what gentool's exporter
emits for its families, and their near kin (normalisations, activations, shape arithmetic) that
families to come will need; no control flow (Loop, Scan, If), no random ops, no sequences, no
custom domains. `tests/test_conformance.py` checks every family's graphs against this list, so a
family that needs another operator adds it here knowingly.
"""

from __future__ import annotations

from gentool.errors import UsageError

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


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 2**20


# what the runtime reads, and the form it must have
_METADATA = {
    "model": lambda v: isinstance(v, str),
    "role": lambda v: isinstance(v, str),
    "image_shape": lambda v: isinstance(v, list) and len(v) == 3 and all(map(_positive_int, v)) and v[0] in (1, 3),
    "latent_dim": _positive_int,
    "size_multiple": lambda v: _positive_int(v) and v <= 64,
    "factor": lambda v: _positive_int(v) and v <= 16,
    "halo": lambda v: v == 0 or (_positive_int(v) and v <= 1024),
    "classes": lambda v: v is None or (isinstance(v, list) and 0 < len(v) <= 100_000 and all(isinstance(c, str) for c in v)),
    "likelihood": lambda v: v in ("bernoulli", "gaussian"),
    "activity": lambda v: isinstance(v, list) and all(isinstance(a, (int, float)) for a in v),
}


def check_metadata(meta: dict, source: str) -> None:
    """Each metadata value the runtime reads has the form it expects (a lie is a usage error, not a crash)."""
    for key, valid in _METADATA.items():
        if key in meta and not valid(meta[key]):
            raise UsageError(f"'{source}': metadata gentool.{key} = {str(meta[key])[:60]} is not valid")
    if meta.get("activity") is not None and len(meta["activity"]) != meta.get("latent_dim"):
        raise UsageError(f"'{source}': metadata gentool.activity has {len(meta['activity'])} values for {meta.get('latent_dim')} latent dimensions")


# role -> (input name, rank) pairs it must take;
# the `label` of a conditional generator and the noise `level` of a denoiser are optional
ROLE_INPUTS = {"encoder": {"x": 4}, "denoiser": {"x": 4}, "upscaler": {"x": 4}, "level_estimator": {"x": 4},
               "features": {"x": 4}, "decoder": {"z": 2}, "generator": {"z": 2}}
OPTIONAL_INPUTS = {"generator": {"label": 1}, "decoder": {"label": 1}, "denoiser": {"level": 4}}
# roles whose image input, or output, has the metadata's image size; the others take any size
FIXED_SIZE_INPUT, FIXED_SIZE_OUTPUT = ("encoder", "features"), ("decoder", "generator")


def check_inputs(inputs, meta: dict, role: str, source: str) -> None:
    """The inputs a role must have, with the sizes the metadata gives (dynamic axes pass)."""
    if role not in ROLE_INPUTS:
        return
    shapes = {i.name: i.shape for i in inputs}
    expected, optional = ROLE_INPUTS[role], OPTIONAL_INPUTS.get(role, {})
    if not set(expected) <= set(shapes) <= set(expected) | set(optional):
        raise UsageError(f"'{source}': a {role} graph takes {', '.join(expected)}; this one takes {', '.join(shapes)}")
    image = meta["image_shape"] if role in FIXED_SIZE_INPUT else meta["image_shape"][:1]
    wanted = {"x": [None, *image], "z": [None, meta.get("latent_dim")], "label": [None], "level": [None, 1, 1, 1]}
    for name, shape in shapes.items():
        sizes = wanted[name] + ([None] * 4)
        bad = len(shape) != {**expected, **optional}[name] or any(
            isinstance(s, int) and w is not None and s != w for s, w in zip(shape, sizes))
        if bad:
            raise UsageError(f"'{source}': input {name} has shape {shape}, which does not fit its metadata")


def check_outputs(outputs, meta: dict, role: str, source: str) -> None:
    """What a role must give: an encoder its code (or mean and log-variance), a feature network its
    features (and logits), a level estimator one map (N, 1, h, w), the image roles one image batch
    with the model's channels."""
    shapes = {o.name: o.shape for o in outputs}
    if role == "encoder":
        if set(shapes) not in ({"code"}, {"mean", "logvar"}) or any(len(s) != 2 for s in shapes.values()):
            raise UsageError(f"'{source}': an encoder graph gives code, or mean and logvar, each (N, D); this one gives {shapes}")
    elif role == "features":
        if set(shapes) not in ({"features"}, {"features", "logits"}) or any(len(s) != 2 for s in shapes.values()):
            raise UsageError(f"'{source}': a features graph gives features, and optionally logits, each (N, D); this one gives {shapes}")
    elif role in ROLE_INPUTS:
        (shape,) = shapes.values() if len(shapes) == 1 else (None,)
        wanted = [1] if role == "level_estimator" else meta["image_shape"] if role in FIXED_SIZE_OUTPUT else meta["image_shape"][:1]
        if shape is None or len(shape) != 4 or any(isinstance(s, int) and s != w for s, w in zip(shape[1:], wanted)):
            form = ", ".join(map(str, wanted + ["H", "W"][len(wanted) - 1 :]))
            raise UsageError(f"'{source}': a {role} graph gives one batch (N, {form}); this one gives {shapes}")
