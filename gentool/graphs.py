"""The torch side of the graphs: their metadata, and the same `Graphs` interface the runtime's
samplers take, backed by the model's torch modules.

Training previews, `evaluate` and `evaluate --anomaly/--probe` drive the runtime's numpy samplers
through `TorchGraphs`, so a seed gives the same codes and images there as from the exported ONNX.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from gentool.runtime.artifact import Graphs, batched


def metadata(model, meta: dict, role: str) -> dict:
    """What every exported graph carries (as `gentool.<key>`, each value JSON-encoded)."""
    import onnxruntime

    import gentool

    return {
        "model": meta["model"],
        "role": role,
        "version": gentool.__version__,
        "onnxruntime_tested": onnxruntime.__version__,
        "image_shape": list(model.image_shape),
        "data": meta.get("data"),
        "classes": meta.get("classes"),
        **model.graph_metadata(),
    }


class TorchGraphs(Graphs):
    """A model's graphs (`model.graphs()`) run eagerly in torch, fed and answering in numpy."""

    def __init__(self, model, meta: dict):
        with torch.random.fork_rng(devices=[]):  # graphs() draws example inputs: leave the training RNG alone
            self.graphs = model.graphs()
        self.meta = json.loads(json.dumps({k: v for k, v in metadata(model, meta, "").items() if k != "role"}))
        self.device = next(model.parameters()).device

    @property
    def roles(self) -> list[str]:
        return sorted(self.graphs)

    def input_names(self, role: str) -> list[str]:
        return list(self.graphs[role].input_names)

    @torch.no_grad()
    def run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        graph = self.graphs[role]
        self.check_feeds(role, graph.input_names, feeds)

        def run_batch(chunk):
            inputs = [torch.from_numpy(np.asarray(chunk[name])).to(self.device, example.dtype)
                      for name, example in zip(graph.input_names, graph.inputs)]
            out = graph.module(*inputs)
            out = out if isinstance(out, tuple) else (out,)
            return {name: t.float().cpu().numpy() for name, t in zip(graph.output_names, out)}

        return batched(dict(feeds), run_batch)
