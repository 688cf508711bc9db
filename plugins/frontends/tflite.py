"""TFLite files for the ``tensorflow`` frontend: the native run on TensorFlow's TFLite interpreter and the
export with tf2onnx's TFLite path.

The card's inputs meet the interpreter's by name when the names match (as sets),
else by position; the same for the outputs. The interpreter is resized to the
card's static shapes and fed the card's dtypes; a fixed dim, a rank or a dtype
that disagrees with the card is refused, naming the card's field.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card


def _interpreter(card: Card, path: Path) -> Any:
    """A TFLite interpreter for ``path``: TensorFlow's ``tf.lite.Interpreter`` (LiteRT's when TensorFlow no
    longer ships one).
    """
    import tensorflow as tf

    interpreter_class = getattr(tf.lite, "Interpreter", None)
    if interpreter_class is None:  # TensorFlow releases after the move to LiteRT
        from ai_edge_litert.interpreter import Interpreter as interpreter_class
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "moving to LiteRT" deprecation notice
            return interpreter_class(model_path=str(path))
    except Exception as error:  # the interpreter raises ValueError / RuntimeError for a bad file
        raise CellError(
            "bad_input", f"{card.path or card.name}: {path.name} is not a loadable TFLite model ({error})"
        ) from None


def _describe(detail: dict[str, Any]) -> str:
    return f"{detail['name']!r} {np.dtype(detail['dtype']).name} {list(detail['shape_signature'])}"


def _order(wanted: list[str], details: list[dict[str, Any]]) -> list[int]:
    """Positions in ``details`` of the card's names in card order: by name when the names match, else by
    position.
    """
    names = [detail["name"] for detail in details]
    if len(set(names)) == len(names) == len(wanted) and set(names) == set(wanted):
        return [names.index(name) for name in wanted]
    return list(range(min(len(wanted), len(details))))


def _problems(card: Card, interpreter: Any) -> list[str]:
    """Every way the interpreter's inputs and outputs disagree with the card, as ``"field: problem"`` lines."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    problems = []
    if len(inputs) != len(card.inputs):
        problems.append(
            f"inputs: the TFLite model has {len(inputs)} inputs ({', '.join(_describe(d) for d in inputs)}), the "
            f"card declares {len(card.inputs)} ({', '.join(spec.name for spec in card.inputs)}); list every input"
        )
    if len(outputs) != len(card.outputs):
        problems.append(
            f"outputs: the TFLite model has {len(outputs)} outputs ({[d['name'] for d in outputs]}), the card "
            f"declares {card.outputs}; list one name per output, in the model's order"
        )
    order = _order([spec.name for spec in card.inputs], inputs)
    for index, (spec, position) in enumerate(zip(card.inputs, order, strict=False)):
        detail = inputs[position]
        dtype = np.dtype(detail["dtype"]).name
        signature = [int(d) for d in detail["shape_signature"]]
        if dtype != spec.dtype:
            problems.append(
                f"inputs.{index}.dtype: input {detail['name']!r} is {dtype} in the TFLite model, the card gives "
                f"{spec.dtype}; set dtype: {dtype}"
            )
        if len(signature) != len(spec.shape):
            problems.append(
                f"inputs.{index}.shape: input {detail['name']!r} has rank {len(signature)} {signature} in the "
                f"TFLite model, the card gives {spec.shape} (rank {len(spec.shape)}); fix inputs.shape"
            )
        elif any(dim > 0 and dim != size for dim, size in zip(signature, spec.shape, strict=True)):
            problems.append(
                f"inputs.{index}.shape: input {detail['name']!r} is fixed to {signature} in the TFLite model, the "
                f"card gives {spec.shape}; fix inputs.shape"
            )
    return problems


def tflite_problems(card: Card, path: Path) -> list[str]:
    """The card against the TFLite file at ``path`` (see :func:`_problems`); an unreadable file is one
    ``source:`` line.
    """
    try:
        interpreter = _interpreter(card, Path(path))
    except CellError as error:
        return [f"source: {error.message}"]
    return _problems(card, interpreter)


class TfliteRunner:
    """A TFLite model on the interpreter, resized to the card's shapes; :meth:`run` takes and returns arrays in
    the card's order.
    """

    def __init__(self, card: Card, path: Path) -> None:
        """Open ``path``, check it against ``card`` (a ``bad_input`` naming every mismatch) and allocate."""
        self.card = card
        self.path = Path(path)
        self.interpreter = _interpreter(card, self.path)
        problems = _problems(card, self.interpreter)
        if problems:
            raise CellError(
                "bad_input",
                f"{card.path or card.name}: the TFLite model {self.path.name} does not match the card:\n"
                + "\n".join(f"  - {p}" for p in problems),
            )
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        #: positions of the card's inputs / outputs among the interpreter's (card order)
        self.input_order = _order([spec.name for spec in card.inputs], inputs)
        self.output_order = _order(list(card.outputs), outputs)
        self.input_names = [detail["name"] for detail in inputs]
        self.output_names = [detail["name"] for detail in outputs]
        self._inputs = [inputs[i] for i in self.input_order]
        self._outputs = [outputs[i] for i in self.output_order]
        try:
            for spec, detail in zip(card.inputs, self._inputs, strict=True):
                self.interpreter.resize_tensor_input(detail["index"], list(spec.shape))
            self.interpreter.allocate_tensors()
        except Exception as error:  # the interpreter raises ValueError / RuntimeError
            raise CellError(
                "bad_input",
                f"{card.path or card.name}: the TFLite model {self.path.name} cannot run at the card's input "
                f"shapes {[spec.shape for spec in card.inputs]} ({error}); fix inputs.shape",
            ) from None

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One call: the card's inputs (card order, each at its card shape) to the outputs (card order)."""
        for spec, detail, array in zip(self.card.inputs, self._inputs, inputs, strict=True):
            value = np.ascontiguousarray(np.asarray(array, dtype=spec.dtype).reshape(spec.shape))
            self.interpreter.set_tensor(detail["index"], value)
        self.interpreter.invoke()
        return [np.array(self.interpreter.get_tensor(detail["index"])) for detail in self._outputs]


def _reorder(values: list[Any], names: list[str], order: list[int]) -> list[Any]:
    """Graph inputs or outputs in the card's order: by the TFLite names when the graph kept them, else by
    position (tf2onnx keeps the TFLite order).
    """
    by_name = {value.name: value for value in values}
    if sorted(by_name) == sorted(names) and len(by_name) == len(values):
        return [by_name[names[i]] for i in order]
    return [values[i] for i in order]


def export_tflite(runner: TfliteRunner, card: Card, path: Path, opset: int) -> None:
    """Convert the TFLite file with ``tf2onnx.convert.from_tflite`` at ``opset`` into ``path``, its inputs and
    outputs put in the card's order (``finalize_onnx`` then pins and renames them).
    """
    import onnx
    import tf2onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tf2onnx.convert.from_tflite(str(runner.path), opset=opset, output_path=str(path))
    except Exception as error:  # tf2onnx raises many unrelated types
        raise CellError(
            "convert_error",
            f"{card.name}: tf2onnx cannot convert the TFLite model {runner.path.name} ({type(error).__name__}: "
            f"{error}); check that every op has an ONNX opset {opset} mapping",
        ) from None
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    real = [value for value in graph.input if value.name not in initializers]
    if len(real) == len(runner.input_order) and len(graph.output) == len(runner.output_order):
        inputs = _reorder(real, runner.input_names, runner.input_order)
        inputs += [value for value in graph.input if value.name in initializers]
        outputs = _reorder(list(graph.output), runner.output_names, runner.output_order)
        if [v.name for v in inputs] != [v.name for v in graph.input] or [v.name for v in outputs] != [
            v.name for v in graph.output
        ]:
            copies = [type(v)() for v in inputs], [type(v)() for v in outputs]
            for copy, value in zip(copies[0] + copies[1], inputs + outputs, strict=True):
                copy.CopyFrom(value)
            del graph.input[:]
            graph.input.extend(copies[0])
            del graph.output[:]
            graph.output.extend(copies[1])
            onnx.save(model, str(path))
