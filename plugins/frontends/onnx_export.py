"""Shared last step of every frontend: make the exported ONNX canonical.

Canonical means: the card's input and output names, every input dim static and
equal to the card's dims (SNPE's ``--input_dim``), shapes inferred, and
``onnx.checker`` clean. Dynamic dims are what push nodes off the HTP
(``Cannot get shape``), so they are pinned here, once, for every frontend.
It also means one self-contained file: weights an exporter (or the shipped
model) keeps in external data files are read back into it (under ONNX's 2 GB
single-file limit; a larger model is refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card
from zoocompat.model.onnx_fold import ort_basic_fold


def _rename(graph, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


#: ONNX tensor element types of the card dtypes (``onnx.TensorProto``'s numbers).
ELEM_TYPES = {"float32": 1, "uint8": 2, "int32": 6, "int64": 7, "bool": 9, "float16": 10}


def _elem_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:  # an element type numpy has no name for (bfloat16, strings, ...)
        return f"ONNX type {elem_type}"


def signature_problems(model: Any, card: Card) -> list[str]:
    """Every way the graph's inputs and outputs disagree with the card, as ``"field: problem"`` lines.

    Input count, each input's rank and dtype must match the card; every fixed dim
    (> 0) must equal the card's; symbolic, zero or negative dims are free (the
    card pins them). Inputs pair up in graph order; the output count must match.
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    real_inputs = [value for value in graph.input if value.name not in initializers]
    graph_inputs = ", ".join(f"{v.name} {_describe_value(v)}" for v in real_inputs)
    problems = []
    if len(real_inputs) != len(card.inputs):
        problems.append(
            f"inputs: the model has {len(real_inputs)} inputs ({graph_inputs}), the card declares "
            f"{len(card.inputs)} ({', '.join(spec.name for spec in card.inputs)}); list every graph input in order"
        )
    if len(graph.output) != len(card.outputs):
        problems.append(
            f"outputs: the model has {len(graph.output)} outputs ({[v.name for v in graph.output]}), the card "
            f"declares {card.outputs}; list them in graph order"
        )
    for index, (value, spec) in enumerate(zip(real_inputs, card.inputs, strict=False)):
        where = f"inputs.{index}"
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        if spec.name != value.name and spec.name in {v.name for v in real_inputs}:
            problems.append(
                f"{where}.name: the card's input {index} is {spec.name!r}, but the model's input {index} is "
                f"{value.name!r} ({spec.name!r} is input {[v.name for v in real_inputs].index(spec.name)}); "
                "list the inputs in the model's order"
            )
        if tensor.elem_type != ELEM_TYPES[spec.dtype]:
            problems.append(
                f"{where}.dtype: input {value.name!r} is {_elem_name(tensor.elem_type)} in the model, the card "
                f"gives {spec.dtype}; set dtype: {_elem_name(tensor.elem_type)}"
            )
        if len(dims) != len(spec.shape):
            problems.append(
                f"{where}.shape: input {value.name!r} has rank {len(dims)} {shown} in the model, the card gives "
                f"shape {spec.shape} (rank {len(spec.shape)}); fix inputs.shape"
            )
            continue
        for dim, size in zip(dims, spec.shape, strict=True):
            # 0 and negative values (Paddle2ONNX writes -1) mean "unknown", like a dim_param
            if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:
                problems.append(
                    f"{where}.shape: input {value.name!r} is fixed to {shown} in the model, the card gives "
                    f"{spec.shape}; fix inputs.shape"
                )
                break
    return problems


def _describe_value(value: Any) -> str:
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return f"{_elem_name(tensor.elem_type)} {dims}"


def check_signature(model: Any, card: Card) -> list[Any]:
    """The graph's real inputs, after checking inputs and outputs against the card (:func:`signature_problems`);
    a ``convert_error`` naming every mismatch otherwise.
    """
    problems = signature_problems(model, card)
    if problems:
        raise CellError(
            "convert_error",
            f"{card.path or card.name}: the model does not match the card:\n" + "\n".join(f"  - {p}" for p in problems),
        )
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


#: Largest model (graph and weights) kept in one ONNX file: protobuf's 2 GiB message limit, less a margin.
MAX_INLINE_BYTES = (1 << 31) - (16 << 20)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds: initializers, and node attributes' tensors (subgraphs included)."""
    yield from graph.initializer
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for subgraph in attribute.graphs:
            yield from _graph_tensors(subgraph)


def _model_tensors(model: Any) -> Iterator[Any]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def external_data(model: Any) -> dict[str, int]:
    """``{location: bytes}`` of the external data files ``model`` (loaded without them) reads its weights from;
    ``{}`` for a self-contained model.
    """
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    files: dict[str, int] = {}
    for tensor in _model_tensors(model):
        if uses_external_data(tensor):
            info = ExternalDataInfo(tensor)
            files[info.location] = files.get(info.location, 0) + max(int(info.length or 0), 0)
    return files


def external_data_problems(model: Any, folder: Path, where: str = "source") -> list[str]:
    """Every external data file ``model`` names that is not a file inside ``folder``, as ``"field: problem"``
    lines (a location must be a relative path that stays beside the model).
    """
    folder = Path(folder).resolve()
    problems = []
    for location in external_data(model):
        relative = PurePosixPath(location.replace("\\", "/"))
        target = (folder / location).resolve()
        if relative.is_absolute() or ".." in relative.parts or not target.is_relative_to(folder):
            problems.append(
                f"{where}: the model keeps weights in {location!r}, outside its folder {folder}; external data "
                "must be a relative path beside the model"
            )
        elif not target.is_file():
            problems.append(
                f"{where}: the model keeps its weights in the external data file {location!r}, which is not beside "
                f"it ({target} is missing); put the .data file next to the .onnx file"
            )
    return problems


def inline_external_data(model: Any, folder: Path, what: str) -> list[Path]:
    """Read the external data of ``model`` (loaded without it) from ``folder`` into the model itself; the files
    read. ``convert_error`` when a file is missing or outside ``folder``, or the weights are over ONNX's 2 GB
    single-file limit (:data:`MAX_INLINE_BYTES`).
    """
    from onnx.external_data_helper import load_external_data_for_model

    files = external_data(model)
    if not files:
        return []
    problems = external_data_problems(model, folder)
    if problems:
        raise CellError("convert_error", f"{what}: " + "; ".join(p.removeprefix("source: ") for p in problems))
    folder = Path(folder).resolve()
    total = sum(size or (folder / location).stat().st_size for location, size in files.items()) + model.ByteSize()
    if total > MAX_INLINE_BYTES:
        raise CellError(
            "convert_error",
            f"{what}: the model's weights are {total / 1e9:.2f} GB, over ONNX's 2 GB single-file limit; models "
            "that need external data at that size are not supported",
        )
    load_external_data_for_model(model, str(folder))
    return [folder / location for location in files]


def finalize_onnx(path: Path, card: Card) -> None:
    """Rename I/O to the card's names, pin input dims, infer shapes and check, in place; weights in external
    data files beside ``path`` are read into it (and those files removed): the result is one file.
    """
    import onnx
    from onnx import shape_inference

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    side_files = inline_external_data(model, path.parent, f"{card.name}: exported ONNX {path.name}")
    graph = model.graph
    real_inputs = check_signature(model, card)
    for value, spec in zip(real_inputs, card.inputs, strict=True):
        _rename(graph, value.name, spec.name)
        for dim, size in zip(value.type.tensor_type.shape.dim, spec.shape, strict=True):
            dim.Clear()
            dim.dim_value = size
    for value, name in zip(list(graph.output), card.outputs, strict=True):
        _rename(graph, value.name, name)
        value.type.tensor_type.ClearField("shape")  # re-derived from the pinned inputs below
    del graph.value_info[:]
    if any(node.op_type == "Shape" for node in graph.node):
        model = _fold_shape_chains(model, path)
    try:
        model = shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as error:  # onnx raises several unrelated types here
        raise CellError("convert_error", f"{card.name}: exported ONNX fails onnx.checker: {error}") from None
    onnx.save(model, str(path))
    for side in side_files:
        if side.resolve() != path.resolve():
            side.unlink(missing_ok=True)  # read into the model above


def _fold_shape_chains(model, path: Path):
    """Constant-fold ``Shape -> Slice/Gather -> Concat -> Reshape`` chains now that the inputs are pinned.

    Exporters that traced dynamic shapes (Paddle2ONNX, tf2onnx) leave these
    chains behind; QNN cannot place a node whose shape is computed at run
    time; :func:`zoocompat.model.onnx_fold.ort_basic_fold` folds them.
    """
    import onnx

    pinned = path.with_name(path.stem + ".pinned.onnx")
    onnx.save(model, str(pinned))
    try:
        ort_basic_fold(pinned, path)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise CellError(
            "convert_error", f"{path.name}: onnxruntime cannot load the graph with the card's input dims: {error}"
        ) from None
    finally:
        pinned.unlink(missing_ok=True)
    return onnx.load(str(path))
