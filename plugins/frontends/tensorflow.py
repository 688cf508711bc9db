"""The ``tensorflow`` frontend: Keras ``.keras`` and legacy ``.h5`` files, SavedModel folders, ``.tflite`` files.

The Keras and SavedModel kinds are wrapped into one callable that takes the
card's inputs (in card order) and returns a list of output tensors (in card
order), so the native forward and the ONNX export run exactly the same
function. Export goes through ``tf2onnx.convert.from_function`` with the card's
static input shapes: ``from_keras`` does not handle Keras 3 models.

A ``.tflite`` file runs natively on TensorFlow's TFLite interpreter, resized to
the card's static shapes, and is exported with tf2onnx's TFLite path
(``tf2onnx.convert.from_tflite``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.frontends.onnx_export import finalize_onnx
from zoocompat_plugins.frontends.tflite import TfliteRunner, export_tflite, tflite_problems

import zoocompat
from zoocompat.api import samples as batching
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card

BATCH = 64
OPSET = 17


@dataclass
class TensorflowModel:
    """A loaded model: ``call`` maps input tensors (card order) to output tensors."""

    native: Any
    call: Callable[[list[Any]], list[Any]]
    kind: str
    #: samples per native call: 64 for a Keras or SavedModel model (any batch size), 1 for a TFLite one (static)
    chunk: int = BATCH
    #: the model file (a ``.tflite`` is exported from it, not from ``call``)
    path: Path | None = None


def _as_list(result: Any) -> list[Any]:
    """A model's outputs as a list: a dict is taken in sorted key order."""
    if isinstance(result, dict):
        return [result[key] for key in sorted(result)]
    if isinstance(result, list | tuple):
        return list(result)
    return [result]


def _load_keras(card: Card, path: Path) -> TensorflowModel:
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # keras raises many unrelated types for a bad file
        raise CellError(
            "bad_input",
            f"{card.name}: cannot load {path} as a Keras model with safe_mode=True ({type(error).__name__}: "
            f"{error}); re-save it with keras 3 and without Lambda layers",
        ) from None

    def call(inputs: list[Any]) -> list[Any]:
        return _as_list(model(inputs[0] if len(inputs) == 1 else inputs, training=False))

    return TensorflowModel(model, call, "keras")


def _h5_lambda_layers(config: Any) -> list[str]:
    """Names of the ``Lambda`` layers anywhere in a Keras model config (nested models included)."""
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            inner = config.get("config")
            found.append(str(inner.get("name", "?")) if isinstance(inner, dict) else "?")
        for value in config.values():
            found.extend(_h5_lambda_layers(value))
    elif isinstance(config, list):
        for value in config:
            found.extend(_h5_lambda_layers(value))
    return found


def _h5_problems(path: Path) -> list[str]:
    """What refuses a legacy Keras ``.h5`` file before anything in it is deserialized: no model config (a
    weights-only file), or ``Lambda`` layers (their Python bytecode would run).
    """
    import json

    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except OSError as error:
        return [f"source: {path.name} is not a readable HDF5 file ({error})"]
    if raw is None:
        return [
            f"source: {path.name} holds no model_config (weights only?); save the whole model "
            "(model.save('model.h5'), or better model.save('model.keras'))"
        ]
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError as error:
        return [f"source: {path.name}: its model_config is not JSON ({error})"]
    lambdas = _h5_lambda_layers(config)
    if lambdas:
        return [
            f"source: {path.name} has Lambda layers {lambdas}: a Lambda layer is Python code, run when loaded; "
            "rebuild the model without Lambda layers (a custom layer class or built-in layers) and save it again"
        ]
    return []


def _load_h5(card: Card, path: Path) -> TensorflowModel:
    """A legacy Keras HDF5 model (``model.save('x.h5')``).

    Legacy H5 has no safe-mode format of its own: a ``Lambda`` layer in it is
    marshalled Python bytecode. Recent Keras 3 releases honour ``safe_mode`` for
    ``.h5`` too, older ones (and tf.keras 2) ignore it, so the file's config is
    read with h5py and refused when it holds a ``Lambda`` layer, before Keras
    deserializes anything; ``safe_mode=True`` is passed as well.
    """
    import keras

    problems = _h5_problems(path)
    if problems:
        raise CellError("bad_input", f"{card.path or card.name}: {problems[0].removeprefix('source: ')}")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # keras raises many unrelated types for a bad file
        raise CellError(
            "bad_input",
            f"{card.name}: cannot load {path} as a legacy Keras H5 model ({type(error).__name__}: {error}); "
            "re-save it with keras 3 as .keras",
        ) from None

    def call(inputs: list[Any]) -> list[Any]:
        return _as_list(model(inputs[0] if len(inputs) == 1 else inputs, training=False))

    return TensorflowModel(model, call, "keras_h5", path=path)


def _load_tflite(card: Card, path: Path) -> TensorflowModel:
    """A TFLite flatbuffer on TensorFlow's interpreter, at the card's static shapes."""
    runner = TfliteRunner(card, path)
    return TensorflowModel(runner, runner.run, "tflite", chunk=1, path=path)


def _load_saved_model(card: Card, path: Path) -> TensorflowModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except Exception as error:  # tensorflow raises many unrelated types for a bad folder
        raise CellError(
            "bad_input",
            f"{card.name}: cannot load the SavedModel {path} with a 'serving_default' signature "
            f"({type(error).__name__}: {error}); export it with tf.saved_model.save or model.export",
        ) from None
    names = sorted(signature.structured_input_signature[1])
    wanted = [spec.name for spec in card.inputs]
    if len(names) != len(wanted):
        raise CellError(
            "bad_input",
            f"{card.name}: the SavedModel {path} takes inputs {names}, the card declares {wanted}; fix inputs",
        )
    if len(names) > 1 and sorted(wanted) != names:
        raise CellError(
            "bad_input",
            f"{card.name}: the SavedModel {path} takes inputs {names}, the card names {wanted}; "
            "use the signature's input names in the card",
        )
    order = names if len(names) == 1 else wanted

    def call(inputs: list[Any]) -> list[Any]:
        return _as_list(signature(**dict(zip(order, inputs, strict=True))))

    return TensorflowModel(loaded, call, "saved_model")


#: Legacy Keras HDF5 file suffixes.
H5_SUFFIXES = (".h5", ".hdf5")


class TensorflowFrontend:
    """Loads ``.keras`` / ``.h5`` files, SavedModel folders and ``.tflite`` files; exports ONNX with tf2onnx."""

    name = "tensorflow"
    order = 20

    def check_model(self, card: Card, source_path: Path) -> list[str]:
        """A ``.tflite`` file's inputs and outputs against the card (count, order by name, rank, dtype, fixed
        dims); a ``.h5`` file's config (present, no ``Lambda`` layer). Other kinds are checked when converted.
        """
        path = Path(source_path)
        if path.is_file() and path.suffix.lower() == ".tflite":
            return tflite_problems(card, path)
        if path.is_file() and path.suffix.lower() in H5_SUFFIXES:
            return _h5_problems(path)
        return []

    def load(self, card: Card, source_path: Path | None) -> TensorflowModel:
        """Load ``source_path``: a ``.keras`` or ``.h5`` file, a ``.tflite`` file, or a folder holding
        ``saved_model.pb``.
        """
        if source_path is None:
            raise CellError(
                "bad_input",
                f"{card.name}: a tensorflow card needs a model file (source: a .keras, .h5 or .tflite file or a "
                "SavedModel folder)",
            )
        path = Path(source_path)
        if not path.exists():
            raise CellError("bad_input", f"{card.name}: no model file or folder at {path}; check the card's source")
        if path.is_file() and path.suffix == ".keras":
            return _load_keras(card, path)
        if path.is_file() and path.suffix.lower() in H5_SUFFIXES:
            return _load_h5(card, path)
        if path.is_file() and path.suffix.lower() == ".tflite":
            return _load_tflite(card, path)
        if path.is_dir() and (path / "saved_model.pb").is_file():
            return _load_saved_model(card, path)
        raise CellError(
            "bad_input",
            f"{card.name}: {path} is neither a .keras file nor a SavedModel folder (with saved_model.pb), nor a "
            ".h5 or .tflite file; fix the card's source",
        )

    def native_forward(
        self, model: TensorflowModel, card: Card, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run the model in FP32 over the sample axis: in batches of 64 when every input has a batch dim (a TFLite
        model: one sample per call, at the card's static shapes).
        """
        missing = [spec.name for spec in card.inputs if spec.name not in inputs]
        if missing:
            raise CellError("bad_input", f"{card.name}: the batch lacks inputs {missing} (it has {sorted(inputs)})")
        batch = {spec.name: np.asarray(inputs[spec.name], dtype=spec.dtype) for spec in card.inputs}
        if batching.count(batch) == 0:
            raise CellError("bad_input", f"{card.name}: the batch for {card.inputs[0].name!r} holds no samples")

        def call(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            outputs = model.call([feed[spec.name] for spec in card.inputs])
            if len(outputs) != len(card.outputs):
                raise CellError(
                    "bad_input",
                    f"{card.name}: the {model.kind} model returns {len(outputs)} outputs, the card declares "
                    f"{card.outputs}; list one name per output, in the model's order",
                )
            return [np.asarray(output) for output in outputs]

        ranks = {spec.name: len(spec.shape) for spec in card.inputs}
        return dict(zip(card.outputs, batching.run_batched(batch, ranks, call, model.chunk), strict=True))

    def export_onnx(self, model: TensorflowModel, card: Card, path: Path) -> None:
        """Convert with tf2onnx (opset 17) at the card's static input shapes, then finalize (a ``.tflite`` file:
        with tf2onnx's TFLite path).
        """
        if model.kind == "tflite":
            export_tflite(model.native, card, Path(path), OPSET)
            finalize_onnx(Path(path), card)
            return
        import tensorflow as tf
        import tf2onnx

        signature = tuple(tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype), name=spec.name) for spec in card.inputs)

        @tf.function(input_signature=signature)
        def forward(*inputs: Any) -> list[Any]:
            return model.call(list(inputs))

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET, output_path=str(path))
        except Exception as error:  # tf2onnx raises many unrelated types
            raise CellError(
                "convert_error",
                f"{card.name}: tf2onnx cannot convert the {model.kind} model ({type(error).__name__}: {error}); "
                f"check that every op has an ONNX opset {OPSET} mapping",
            ) from None
        finalize_onnx(path, card)


@zoocompat.hookimpl
def zoocompat_frontends() -> list[TensorflowFrontend]:
    """The TensorFlow frontend."""
    return [TensorflowFrontend()]
