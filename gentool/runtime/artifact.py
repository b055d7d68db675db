"""Find a model's ONNX graphs (run dir, export dir, single .onnx, bare model name) and run them.

A graph is never run without its metadata: a file lacking `gentool.model`/`gentool.role` is refused.
Sessions are opened lazily, one per role, so a verb loads only the graphs it needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gentool.errors import UsageError
from gentool.runtime.providers import check_session, providers_for

RUNS = Path("runs")
REQUIRED = ("gentool.model", "gentool.role", "gentool.image_shape")


def _newest_run(name: str) -> Path:
    candidates = [p for p in RUNS.glob(f"{name}-*") if p.is_dir() and any(p.glob("*.onnx"))]
    if not candidates:
        raise UsageError(f"'{name}' is not a file or directory, and no run of a model '{name}' with exported graphs is in {RUNS}/")
    return max(candidates, key=lambda p: p.stat().st_mtime)


class Artifact:
    """The graphs of one trained model, by role."""

    def __init__(self, spec: str, device: str = "auto"):
        path = Path(spec)
        if not path.exists():
            if "/" in spec or spec.endswith(".onnx"):
                raise UsageError(f"no such file or directory: '{spec}'")
            path = _newest_run(spec)
        self.device = device
        self.providers = providers_for(device)
        self._sessions: dict = {}
        self.meta: dict[str, str] = {}
        if path.is_file():
            if path.suffix != ".onnx":
                raise UsageError(f"'{path}' is not an .onnx file, a run directory or an export directory")
            role = self._open(path)["gentool.role"]
            self.files = {role: path}
        else:
            self.files = {p.stem: p for p in sorted(path.glob("*.onnx"))}
            if not self.files:
                hint = " (run `gentool export " + str(path) + " --onnx`)" if (path / "model.safetensors").exists() else ""
                raise UsageError(f"no .onnx graphs in '{path}'{hint}")
            self._open(next(iter(self.files.values())))
        self.path = path

    def _open(self, file: Path) -> dict[str, str]:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(str(file), options, providers=self.providers)
        except Exception as e:
            raise UsageError(f"'{file}' is not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        check_session(session, self.device)
        meta = session.get_modelmeta().custom_metadata_map
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise UsageError(f"'{file}' has no gentool metadata ({', '.join(missing)}); export it with `gentool export`")
        if self.meta and meta["gentool.model"] != self.meta["gentool.model"]:
            raise UsageError(f"'{file}' belongs to a '{meta['gentool.model']}' model, not '{self.meta['gentool.model']}'")
        self.meta = self.meta or dict(meta)
        self._sessions[meta["gentool.role"]] = session
        return meta

    @property
    def model(self) -> str:
        return self.meta["gentool.model"]

    @property
    def roles(self) -> list[str]:
        return sorted(self.files)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.meta["gentool.image_shape"].split(","))

    @property
    def latent_dim(self) -> int:
        return int(self.meta["gentool.latent_dim"])

    def prior(self, verb: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the distribution codes are drawn from (for `verb`'s message)."""
        if "gentool.prior" not in self.meta:
            raise UsageError(f"'{verb}' draws codes from a prior, and this {self.model} model has none")
        prior = json.loads(self.meta["gentool.prior"])
        return np.asarray(prior["mean"], np.float64), np.asarray(prior["cov"], np.float64)

    def require(self, role: str, verb: str) -> None:
        if role not in self.files:
            article = "an" if role[0] in "aeiou" else "a"
            raise UsageError(f"'{verb}' needs {article} {role} graph; this {self.model} artifact has {', '.join(self.roles)}")

    def session(self, role: str):
        if role not in self._sessions:
            meta = self._open(self.files[role])
            if meta["gentool.role"] != role:
                raise UsageError(f"'{self.files[role]}' holds a {meta['gentool.role']} graph, not {role}")
        return self._sessions[role]

    def run(self, role: str, inputs: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Run a one-input graph over `inputs` in batches; returns its outputs by name."""
        session = self.session(role)
        name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        chunks = [session.run(None, {name: inputs[i : i + batch_size].astype(np.float32)}) for i in range(0, len(inputs), batch_size)]
        return {o: np.concatenate([c[k] for c in chunks]) for k, o in enumerate(outputs)}
