"""``pytorch``: a state dict plus an importable architecture, exported with torch.onnx."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.frontends.onnx_export import finalize_onnx

import zoocompat
from zoocompat.api import samples as batching
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card

OPSET = 17
BATCH = 64


def build_architecture(card: Card) -> Any:
    """Instantiate the card's ``architecture`` (``module:Class``)."""
    module_name, _, class_name = (card.architecture or "").partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError, ValueError) as error:
        raise CellError(
            "bad_input",
            f"{card.path}: architecture {card.architecture!r} cannot be built ({error}); "
            f"name an importable module:Class",
        ) from None


class PytorchFrontend:
    """Loads ``torch.load(weights_only=True)`` state dicts into the card's architecture."""

    name = "pytorch"
    framework = "torch"
    order = 10

    def check_card(self, card: Card) -> list[str]:
        """A state dict needs the architecture to load into."""
        if card.architecture is None:
            return ["architecture: a pytorch card needs 'architecture: module:Class' to rebuild the network"]
        return []

    def load(self, card: Card, source_path: Path | None) -> Any:
        """Build the architecture and load the weights (no pickled code is ever run)."""
        import torch

        model = build_architecture(card)
        try:
            state = torch.load(source_path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for bad files
            raise CellError("bad_input", f"{source_path}: not a loadable state dict ({error})") from None
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CellError(
                "bad_input", f"{source_path}: weights do not fit {card.architecture}: {str(error)[:400]}"
            ) from None
        return model.eval()

    def native_forward(self, model: Any, card: Card, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """FP32 forward in torch: in batches when every input has a batch dim, else sample by sample."""
        import torch

        names = [spec.name for spec in card.inputs]

        def call(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            out = model(*(torch.from_numpy(np.ascontiguousarray(feed[name])) for name in names))
            return [o.numpy() for o in (out if isinstance(out, tuple | list) else (out,))]

        ranks = {spec.name: len(spec.shape) for spec in card.inputs}
        with torch.no_grad():
            outputs = batching.run_batched(inputs, ranks, call, BATCH)
        return dict(zip(card.outputs, outputs, strict=True))

    def export_onnx(self, model: Any, card: Card, path: Path) -> None:
        """torch.onnx.export with the card's static dims, then canonicalise."""
        import torch

        example = tuple(torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype)) for spec in card.inputs)
        try:
            torch.onnx.export(
                model,
                example,
                str(path),
                input_names=[spec.name for spec in card.inputs],
                output_names=card.outputs,
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as error:  # exporter errors are many types
            raise CellError("convert_error", f"{card.name}: torch.onnx.export failed: {error}") from None
        finalize_onnx(path, card)


@zoocompat.hookimpl
def zoocompat_frontends() -> list[PytorchFrontend]:
    """Register the PyTorch frontend."""
    return [PytorchFrontend()]
