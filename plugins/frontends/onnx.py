"""``onnx``: an ONNX file as it is shipped; its native runtime is onnxruntime's CPU EP.

Export pins the card's static input dims (a symbolic batch dim is what pushes
nodes off the HTP) and renames inputs and outputs to the card's names.

A model whose weights live in an external data file (``model.onnx`` with its
``model.data`` beside it, ``onnx.save(..., save_as_external_data=True)``) is read
with that file from the model's folder; the exported canonical ONNX holds the
weights itself (one file, under ONNX's 2 GB limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.frontends.onnx_export import (
    check_signature,
    external_data_problems,
    finalize_onnx,
    inline_external_data,
    signature_problems,
)

import zoocompat
from zoocompat.api import samples as batching
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card


class OnnxFrontend:
    """Shipped ONNX files."""

    name = "onnx"
    order = 30

    @staticmethod
    def _read(source_path: Path | None) -> Any:
        """The parsed graph, without its external data; ``bad_input`` for a file that is not one (unreadable,
        empty, truncated).
        """
        import onnx

        try:
            model = onnx.load(str(source_path), load_external_data=False)
        except Exception as error:  # protobuf decode errors come in several types
            raise CellError("bad_input", f"{source_path}: not a readable ONNX model ({error})") from None
        if not model.graph.node:
            raise CellError(
                "bad_input", f"{source_path}: the ONNX model has no graph nodes (an empty or truncated file?)"
            )
        return model

    def load(self, card: Card, source_path: Path | None) -> Any:
        """Check the file parses as ONNX, matches the card and has its external data files beside it; the model
        object is its path.
        """
        model = self._read(source_path)
        check_signature(model, card)  # before the native run: a mismatch is the card's fault
        problems = external_data_problems(model, Path(source_path).parent)
        if problems:
            raise CellError("bad_input", f"{card.path or card.name}: {Path(source_path).name}: {problems[0]}")
        return Path(source_path)

    def check_model(self, card: Card, source_path: Path) -> list[str]:
        """The card's inputs (names, count, rank, dtype, fixed dims) and outputs against the graph's, and its
        external data files (beside it); ``bad_input`` when the file is no ONNX model at all.
        """
        model = self._read(source_path)
        return signature_problems(model, card) + external_data_problems(model, Path(source_path).parent)

    def native_forward(self, model: Any, card: Card, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The shipped graph on onnxruntime's CPU EP, sample by sample; the card's inputs feed the graph's in
        order (the shipped names may differ: export renames them to the card's).
        """
        import onnxruntime as ort

        source = Path(model)
        graph = self._read(source)
        if inline_external_data(graph, source.parent, f"{card.name}: {source.name}"):
            # read in here, as export does: onnxruntime refuses small tensors (a Reshape's shape) kept outside
            session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        else:
            session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        graph_names = [i.name for i in session.get_inputs()]
        by_graph = {graph: inputs[spec.name] for graph, spec in zip(graph_names, card.inputs, strict=True)}
        ranks = batching.session_ranks(session)
        calls = [session.run(None, batching.sample(by_graph, i, ranks)) for i in range(batching.count(by_graph))]
        return dict(zip(card.outputs, batching.collect(calls), strict=True))

    def export_onnx(self, model: Any, card: Card, path: Path) -> None:
        """Copy the model, its external data read in, and make it canonical (static dims, card names)."""
        import onnx

        source = Path(model)
        graph = self._read(source)
        inline_external_data(graph, source.parent, f"{card.name}: {source.name}")
        onnx.save(graph, str(path))
        finalize_onnx(path, card)


@zoocompat.hookimpl
def zoocompat_frontends() -> list[OnnxFrontend]:
    """Register the ONNX frontend."""
    return [OnnxFrontend()]
