"""A model's graphs by role, and what the samplers see of them.

`Graphs` is the interface every sampler takes: the model's metadata (one dict, decoded from the JSON
values every graph carries) and each role's network as a callable, feeds dict -> outputs dict. An
`Artifact` is its onnxruntime side: the ONNX files of a run directory, an export directory, a
single `.onnx` or a bare model name. The torch side (`gentool.graphs.TorchGraphs`) runs the same
samplers over the torch modules, so training previews and evaluation draw exactly what the
runtime draws.

A graph is never run without its metadata: a file lacking `gentool.model`/`gentool.role` is
refused, and so is one whose operators or inputs are not what gentool exports (`graphcheck`).
Sessions open lazily, one per role, so a verb loads only the graphs it needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gentool import runs
from gentool.errors import UsageError
from gentool.runtime import graphcheck
from gentool.runtime.providers import check_session, providers_for

PREFIX = "gentool."
REQUIRED = ("model", "role", "image_shape")
# onnxruntime's input types -> the numpy dtype a feed is cast to
DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
BATCH = 256


def decode_metadata(props: dict[str, str], source: str) -> dict:
    """`gentool.*` metadata props -> {key without the prefix: JSON-decoded value}: the one reader."""
    meta = {}
    for key, text in props.items():
        if key.startswith(PREFIX):
            try:
                meta[key[len(PREFIX):]] = json.loads(text)
            except ValueError:
                raise UsageError(f"'{source}': metadata {key} is not JSON (written by an older gentool?); re-export it with `gentool export`") from None
    return meta


class Graphs:
    """Metadata and networks by role; subclasses give `roles`, `input_names(role)` and `run(role, feeds)`,
    the role's network as a callable: feeds dict -> outputs dict."""

    meta: dict

    @property
    def roles(self) -> list[str]:
        raise NotImplementedError

    def input_names(self, role: str) -> list[str]:
        raise NotImplementedError

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])

    def check_feeds(self, role: str, names, feeds: dict) -> None:
        """The feeds name exactly the graph's inputs."""
        if set(names) != set(feeds):
            raise UsageError(f"the {role} graph takes {', '.join(names)}; got {', '.join(feeds) or 'nothing'}")

    def need(self, key: str, verb: str):
        """A metadata value a verb needs; its absence is a usage error naming the verb."""
        if self.meta.get(key) is None:
            raise UsageError(f"'{verb}' needs the model's {key.replace('_', ' ')}, and this {self.model} model has none")
        return self.meta[key]


def batched(feeds: dict[str, np.ndarray], run_batch, batch_size: int = BATCH) -> dict[str, np.ndarray]:
    """Run `run_batch` over aligned feeds in chunks of `batch_size` rows; outputs concatenated by name."""
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1:
        raise UsageError(f"inputs {', '.join(feeds)} must have one batch size, got {sorted(sizes)}")
    (n,) = sizes
    chunks = [run_batch({k: v[i : i + batch_size] for k, v in feeds.items()}) for i in range(0, n, batch_size)]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


class Artifact(Graphs):
    """The ONNX graphs of one trained model, run by onnxruntime."""

    def __init__(self, spec: str, device: str = "auto"):
        path = Path(spec)
        if not path.exists():
            if "/" in spec or spec.endswith(".onnx"):
                raise UsageError(f"no such file or directory: '{spec}'")
            path = runs.newest(spec, "*.onnx", "exported graphs")
        self.device = device
        self.providers = providers_for(device)
        self._sessions: dict = {}
        self._declared: dict = {}
        self.meta: dict = {}
        if path.is_file():
            if path.suffix != ".onnx":
                raise UsageError(f"'{path}' is not an .onnx file, a run directory or an export directory")
            self.files = {self._open(path)["role"]: path}
        else:
            self.files = {p.stem: p for p in sorted(path.glob("*.onnx"))}
            if not self.files:
                hint = " (run `gentool export " + str(path) + " --onnx`)" if (path / "model.safetensors").exists() else ""
                raise UsageError(f"no .onnx graphs in '{path}'{hint}")
            self._open(next(iter(self.files.values())))
        self.path = path

    def _open(self, file: Path) -> dict:
        import onnxruntime

        from gentool.runtime import verbs

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # errors become gentool's own one-line messages
        try:
            model = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read '{file}': {exc.strerror or exc}") from None
        graphcheck.check_operators(model, str(file))
        try:
            session = onnxruntime.InferenceSession(model, options, providers=self.providers)
        except Exception as e:
            raise UsageError(f"'{file}' is not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        check_session(session, self.device)
        meta = decode_metadata(session.get_modelmeta().custom_metadata_map, str(file))
        missing = [PREFIX + k for k in REQUIRED if k not in meta]
        if missing:
            raise UsageError(f"'{file}' has no gentool metadata ({', '.join(missing)}); export it with `gentool export`")
        graphcheck.check_metadata(meta, verbs.samplers(), str(file))
        declared = verbs.role(meta["role"], str(file))
        graphcheck.check_inputs(session.get_inputs(), meta, meta["role"], declared, str(file))
        graphcheck.check_outputs(session.get_outputs(), meta, meta["role"], declared, str(file))
        if self.meta and meta["model"] != self.meta["model"]:
            raise UsageError(f"'{file}' belongs to a '{meta['model']}' model, not '{self.meta['model']}'")
        if self.meta and meta.get("origin") != self.meta.get("origin"):
            raise UsageError(f"'{file}' was exported from another checkpoint than the other graphs in '{file.parent}'; export them again together")
        self.meta = self.meta or {k: v for k, v in meta.items() if k != "role"}
        self._sessions[meta["role"]], self._declared[meta["role"]] = session, declared
        return meta

    @property
    def roles(self) -> list[str]:
        return sorted(self.files)

    def session(self, role: str):
        if role not in self.files:
            hint = f"; pass the directory that holds all its graphs, not '{self.path.name}' alone" if self.path.is_file() else ""
            raise UsageError(f"this {self.model} artifact has no {role} graph (it has {', '.join(self.roles)}){hint}")
        if role not in self._sessions:
            meta = self._open(self.files[role])
            if meta["role"] != role:
                raise UsageError(f"'{self.files[role]}' holds a {meta['role']} graph, not {role}")
        return self._sessions[role]

    def input_names(self, role: str) -> list[str]:
        return [i.name for i in self.session(role).get_inputs()]

    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a graph on named inputs, each cast to the dtype the graph declares, in batches."""
        session = self.session(role)
        inputs = session.get_inputs()
        self.check_feeds(role, [i.name for i in inputs], feeds)
        typed = {i.name: np.asarray(feeds[i.name]).astype(DTYPES.get(i.type, np.float32), copy=False) for i in inputs}
        names = [o.name for o in session.get_outputs()]
        try:
            outputs = batched(typed, lambda chunk: dict(zip(names, session.run(names, chunk))))
        except (UsageError, MemoryError):
            raise
        except Exception as exc:  # onnxruntime's errors have no common base class
            reason = str(exc).splitlines()[0].split("Status Message: ")[-1][:200]
            raise UsageError(f"the {role} graph of '{self.path}' failed on its input ({reason}): it does not fit its metadata") from None
        graphcheck.check_values(outputs, len(next(iter(typed.values()))), self.meta, role, self._declared[role], str(self.files[role]))
        for name, values in outputs.items():
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                raise UsageError(f"the {role} graph of '{self.path}' gave non-finite values (NaN or inf) for {name}: its weights or its inputs are broken")
        return outputs
