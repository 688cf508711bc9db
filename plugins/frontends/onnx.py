"""``onnx``: an ONNX file as it is shipped; its native runtime is onnxruntime's CPU EP.

Export pins the card's static input dims (a symbolic batch dim is what pushes
nodes off the HTP) and renames inputs and outputs to the card's names.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.frontends.onnx_export import check_signature, finalize_onnx

import zoocompat
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card


class OnnxFrontend:
    """Shipped ONNX files."""

    name = "onnx"
    order = 30

    def load(self, card: Card, source_path: Path | None) -> Any:
        """Check the file parses as ONNX; the model object is its path."""
        import onnx

        try:
            model = onnx.load(str(source_path), load_external_data=False)
        except Exception as error:  # protobuf decode errors come in several types
            raise CellError("bad_input", f"{source_path}: not a readable ONNX model ({error})") from None
        if not model.graph.node:
            raise CellError(
                "bad_input", f"{source_path}: the ONNX model has no graph nodes (an empty or truncated file?)"
            )
        check_signature(model, card)  # before the native run, so a mismatch reads as the card's fault
        return Path(source_path)

    def native_forward(self, model: Any, card: Card, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The shipped graph on onnxruntime's CPU EP, sample by sample, as shipped (names untouched)."""
        import onnxruntime as ort

        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        input_names = [i.name for i in session.get_inputs()]
        (array,) = inputs.values()
        outs = [session.run(None, {input_names[0]: array[i : i + 1]}) for i in range(len(array))]
        return {name: np.concatenate([o[k] for o in outs]) for k, name in enumerate(card.outputs)}

    def export_onnx(self, model: Any, card: Card, path: Path) -> None:
        """Copy the file and make it canonical (static dims, card names)."""
        shutil.copyfile(model, path)
        finalize_onnx(path, card)


@zoocompat.hookimpl
def zoocompat_frontends() -> list[OnnxFrontend]:
    """Register the ONNX frontend."""
    return [OnnxFrontend()]
