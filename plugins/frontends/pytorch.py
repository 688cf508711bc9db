"""``pytorch``: the formats PyTorch models ship in, exported with torch.onnx.

The format is told from the file (see :func:`model_format`):

* a state dict, ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``: no pickled code runs) or
  ``.safetensors`` (``safetensors.torch.load_file``), loaded into the card's ``architecture``;
* a TorchScript archive, ``.jit`` / ``.torchscript``, or a ``.pt`` zip holding a TorchScript ``code/``
  tree (``torch.jit.load``; the network comes with it, no ``architecture``);
* a ``torch.export`` program, ``.pt2`` (``torch.export.load`` then ``.module()``; no ``architecture``).

``architecture`` is ``module:Class`` (an importable module) or ``file.py:Class``, a Python file beside
the card (a path relative to the card's folder that stays inside it), loaded without ``PYTHONPATH``. Such
a file may import installed packages, not its sibling files.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import weakref
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from zoocompat_plugins.frontends.onnx_export import finalize_onnx

import zoocompat
from zoocompat.api import samples as batching
from zoocompat.api.cache import sha256_file
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card, LocalFileSource, PypiFileSource

OPSET = 17
BATCH = 64

#: The formats :func:`model_format` tells apart.
STATE_DICT, SAFETENSORS, TORCHSCRIPT, EXPORTED = "state_dict", "safetensors", "torchscript", "exported_program"
#: Formats that carry their network (no ``architecture`` needed).
SELF_CONTAINED = (TORCHSCRIPT, EXPORTED)
#: File suffixes whose format the name alone tells.
SUFFIX_FORMATS = {".safetensors": SAFETENSORS, ".jit": TORCHSCRIPT, ".torchscript": TORCHSCRIPT, ".pt2": EXPORTED}
#: Scalar argument types of a TorchScript ``forward`` that take a Python number, not a tensor.
SCALAR_TYPES = {"int": int, "float": float, "bool": bool}

#: The ExportedProgram behind each module :meth:`PytorchFrontend.load` returned for a ``.pt2`` file.
_EXPORTED_PROGRAMS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _card_name(card: Card) -> str:
    return str(card.path or card.name)


def model_format(path: Path) -> str:
    """The format of the model file at ``path``: by suffix for ``.safetensors``, ``.jit``, ``.torchscript``
    and ``.pt2``; any other file by its content (a zip with a TorchScript ``code/`` tree is TorchScript, one
    with a ``torch.export`` archive layout is an exported program, anything else a state dict).
    """
    path = Path(path)
    if path.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[path.suffix.lower()]
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return STATE_DICT  # torch.load says what is wrong with it
        parts = [PurePosixPath(name).parts for name in names]
        if any(len(p) > 2 and p[1] == "code" for p in parts):
            return TORCHSCRIPT
        if any(len(p) == 2 and p[1] == "archive_format" for p in parts) or any(
            len(p) > 2 and p[1] == "models" and p[-1].endswith(".json") for p in parts
        ):
            return EXPORTED
    return STATE_DICT


def _source_file_name(card: Card) -> str | None:
    """The model file's name as the card gives it (``None`` for a recipe: its file is known once trained)."""
    source = card.source
    if isinstance(source, LocalFileSource | PypiFileSource):
        return source.path
    return None


#: Suffixes a TorchScript archive and a state dict share: only the file's content tells them apart.
ARCHIVE_SUFFIXES = (".pt", ".pth")


def _card_needs_architecture(card: Card) -> bool:
    """Whether the card alone shows a state dict (which needs ``architecture``): a source suffix that only a
    state dict has, or a local ``.pt``/``.pth`` file whose content says so (once the card's folder is known;
    before that, :meth:`PytorchFrontend.check_model` and ``load`` look into it). A ``.pt`` inside a wheel
    cannot be looked into: it counts as a state dict. A recipe's file is judged when the recipe has run (a
    recipe may write a TorchScript archive or a ``.pt2`` program, which need none).
    """
    name = _source_file_name(card)
    if name is None:
        return False
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix] not in SELF_CONTAINED
    if suffix in ARCHIVE_SUFFIXES and isinstance(card.source, LocalFileSource):
        path = card.folder / name
        if card.path is None or not path.is_file():
            return False  # judged on the file itself, by check_model and load
        return model_format(path) not in SELF_CONTAINED
    return True


def split_architecture(value: str) -> tuple[str, str]:
    """``(module or .py path, class name)`` of an ``architecture`` value; ``("", "")`` parts when missing."""
    target, _, class_name = value.rpartition(":")
    return target.strip(), class_name.strip()


def is_file_architecture(value: str | None) -> bool:
    """Whether ``architecture`` names a ``.py`` file beside the card (``my_net.py:MyNet``)."""
    return bool(value) and split_architecture(value)[0].lower().endswith(".py")


def _architecture_syntax(card: Card) -> list[str]:
    """Problems the ``architecture`` value has on its own (no file is read)."""
    value = card.architecture or ""
    target, class_name = split_architecture(value)
    if not target or not class_name.isidentifier():
        return [
            f"architecture: {value!r} is not 'module:Class' or 'file.py:Class' (a Python file beside the card); "
            "name the module or file, a colon, then the class"
        ]
    if is_file_architecture(value):
        relative = PurePosixPath(target.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts or (len(target) > 1 and target[1] == ":"):
            return [
                f"architecture: {target!r} must be a path relative to the card's folder that stays inside it "
                "(no absolute path, no '..'); put the .py file beside the card"
            ]
    return []


def _architecture_file(card: Card, target: str) -> Path:
    """The ``.py`` file an ``architecture`` names, resolved and checked to be inside the card's folder."""
    folder = card.folder.resolve()
    path = (folder / target).resolve()
    if not path.is_relative_to(folder):
        raise CellError(
            "bad_input",
            f"{_card_name(card)}: architecture {card.architecture!r} resolves to {path}, outside the card's folder "
            f"{folder}; keep the architecture's .py file beside the card",
        )
    if not path.is_file():
        raise CellError(
            "bad_input",
            f"{_card_name(card)}: architecture {card.architecture!r}: no Python file at {path}; "
            "put it beside the card or fix the path",
        )
    return path


def _module_from_file(card: Card, path: Path) -> Any:
    """Import ``path`` under a name of its own (its path and content: an edited file is a new module)."""
    digest = hashlib.sha256(f"{path}\0{sha256_file(path)}".encode()).hexdigest()[:20]
    name = f"zoocompat_card_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CellError("bad_input", f"{_card_name(card)}: architecture: {path} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and torch.jit.script look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code can raise anything
        del sys.modules[name]
        raise CellError(
            "bad_input",
            f"{_card_name(card)}: architecture {card.architecture!r}: importing {path} failed "
            f"({type(error).__name__}: {error}); fix the file",
        ) from None
    return module


def build_architecture(card: Card) -> Any:
    """Instantiate the card's ``architecture``: ``module:Class`` (importable) or ``file.py:Class`` (a file in
    the card's folder, imported under a unique module name; see :func:`is_file_architecture`).
    """
    problems = _architecture_syntax(card)
    if problems:
        raise CellError("bad_input", f"{_card_name(card)}: {problems[0]}")
    target, class_name = split_architecture(card.architecture or "")
    if is_file_architecture(card.architecture):
        module = _module_from_file(card, _architecture_file(card, target))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise CellError(
                "bad_input",
                f"{_card_name(card)}: architecture {card.architecture!r} cannot be built ({error}); "
                "name an importable module:Class, or a file.py:Class beside the card",
            ) from None
    try:
        return getattr(module, class_name)()
    except AttributeError as error:
        raise CellError(
            "bad_input",
            f"{_card_name(card)}: architecture {card.architecture!r} cannot be built ({error}); "
            "name an importable module:Class, or a file.py:Class beside the card",
        ) from None


def _needs_architecture_problem(card: Card, what: str) -> str:
    return (
        f"architecture: {what} is a PyTorch state dict: a pytorch card needs 'architecture: module:Class' "
        "(or 'file.py:Class', a Python file beside the card) to rebuild the network; a TorchScript archive "
        "(.jit, .torchscript) or a torch.export program (.pt2) needs none"
    )


def _scalar_arguments(model: Any) -> list[str | None]:
    """Per ``forward`` argument of a TorchScript module: its scalar type name (``int``, ``float``, ``bool``), or
    ``None`` for a tensor (``[]`` for any other module: every argument is a tensor).
    """
    import torch

    if not isinstance(model, torch.jit.ScriptModule):
        return []
    try:
        arguments = model.forward.schema.arguments[1:]  # [0] is self
    except (AttributeError, RuntimeError):
        return []
    return [str(a.type) if str(a.type) in SCALAR_TYPES else None for a in arguments]


def _torch_args(model: Any, card: Card, feed: dict[str, np.ndarray]) -> list[Any]:
    """The card's inputs as ``forward`` arguments: tensors, or Python numbers where TorchScript takes them."""
    import torch

    scalars = _scalar_arguments(model)
    args = []
    for index, spec in enumerate(card.inputs):
        array = np.ascontiguousarray(feed[spec.name])
        kind = scalars[index] if index < len(scalars) else None
        args.append(SCALAR_TYPES[kind](array.reshape(-1)[0]) if kind else torch.from_numpy(array))
    return args


def _as_outputs(result: Any) -> list[Any]:
    """A model's outputs as a list (a dict in its own order)."""
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, tuple | list):
        return list(result)
    return [result]


class PytorchFrontend:
    """Loads PyTorch state dicts (``.pt``/``.pth``, ``.safetensors``) into the card's architecture, TorchScript
    archives and ``torch.export`` programs (see the module docstring).
    """

    name = "pytorch"
    framework = "torch"
    order = 10

    def check_card(self, card: Card) -> list[str]:
        """A state dict needs the architecture to load into; ``architecture`` must be well formed.

        Only the card is seen: the format is told by the source's suffix; a local ``.pt``/``.pth`` file by
        its content, here once the card's folder is known, else by :meth:`check_model` and ``load`` (see
        :func:`_card_needs_architecture`). A TorchScript archive is safest named ``.jit`` or ``.torchscript``.
        """
        if card.architecture is not None:
            return _architecture_syntax(card)
        if not _card_needs_architecture(card):
            return []
        name = _source_file_name(card)
        return [_needs_architecture_problem(card, f"source {name!r}" if name else "the recipe's model file")]

    def check_model(self, card: Card, source_path: Path) -> list[str]:
        """The model file's format against the card: a state dict needs ``architecture``, whose ``.py`` file
        must be beside the card.
        """
        found = model_format(Path(source_path))
        if found in SELF_CONTAINED:
            return []
        if card.architecture is None:
            return [_needs_architecture_problem(card, f"{Path(source_path).name}")]
        problems = _architecture_syntax(card)
        if not problems and is_file_architecture(card.architecture):
            try:
                _architecture_file(card, split_architecture(card.architecture)[0])
            except CellError as error:
                problems.append(f"architecture: {error.message}")
        return problems

    def load(self, card: Card, source_path: Path | None) -> Any:
        """The network with its weights, as an ``nn.Module`` in eval mode (see :func:`model_format`); no pickled
        code is ever run. A TorchScript archive or a ``.pt2`` program brings its own network: an
        ``architecture`` the card gives is not used for them.
        """
        if source_path is None or not Path(source_path).is_file():
            raise CellError(
                "bad_input", f"{_card_name(card)}: source: no PyTorch model file at {source_path}; check the source"
            )
        path = Path(source_path)
        found = model_format(path)
        if found == TORCHSCRIPT:
            return self._load_torchscript(card, path)
        if found == EXPORTED:
            return self._load_exported(card, path)
        if card.architecture is None:
            raise CellError("bad_input", f"{_card_name(card)}: {_needs_architecture_problem(card, path.name)}")
        model = build_architecture(card)
        state = self._read_state(card, path, found)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CellError(
                "bad_input", f"{path}: weights do not fit {card.architecture}: {str(error)[:400]}"
            ) from None
        return model.eval()

    @staticmethod
    def _read_state(card: Card, path: Path, found: str) -> Any:
        import torch

        if found == SAFETENSORS:
            from safetensors.torch import load_file

            try:
                return load_file(str(path), device="cpu")
            except Exception as error:  # safetensors raises its own error types for bad files
                raise CellError(
                    "bad_input", f"{_card_name(card)}: {path}: not a readable safetensors file ({error})"
                ) from None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for bad files
            raise CellError("bad_input", f"{path}: not a loadable state dict ({error})") from None

    @staticmethod
    def _load_torchscript(card: Card, path: Path) -> Any:
        import torch

        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as error:  # torch raises many types for bad archives
            raise CellError(
                "bad_input", f"{_card_name(card)}: {path}: not a loadable TorchScript archive ({error})"
            ) from None

    @staticmethod
    def _load_exported(card: Card, path: Path) -> Any:
        import torch

        try:
            program = torch.export.load(str(path))
            module = program.module()
        except Exception as error:  # torch raises many types for bad archives
            raise CellError(
                "bad_input",
                f"{_card_name(card)}: {path}: not a loadable torch.export program ({type(error).__name__}: "
                f"{error}); save it with torch.export.save",
            ) from None
        _EXPORTED_PROGRAMS[module] = program
        return module  # an exported module refuses .eval(): it runs in the mode it was exported in

    def native_forward(self, model: Any, card: Card, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """FP32 forward in torch. An eager module (from a state dict) takes batches of 64 when every input has a
        batch dim; a TorchScript or exported module runs one sample at a time, at the card's shapes (a traced or
        exported graph may hold its example's batch size).
        """
        import torch

        def call(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            outputs = _as_outputs(model(*_torch_args(model, card, feed)))
            if len(outputs) != len(card.outputs):
                raise CellError(
                    "bad_input",
                    f"{_card_name(card)}: outputs: the model returns {len(outputs)} outputs, the card declares "
                    f"{card.outputs}; list one name per output, in the model's order",
                )
            return [o.detach().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs]

        eager = not (isinstance(model, torch.jit.ScriptModule) or model in _EXPORTED_PROGRAMS)
        ranks = {spec.name: len(spec.shape) for spec in card.inputs}
        with torch.no_grad():
            outputs = batching.run_batched(inputs, ranks, call, BATCH if eager else 1)
        return dict(zip(card.outputs, outputs, strict=True))

    def export_onnx(self, model: Any, card: Card, path: Path) -> None:
        """torch.onnx.export with the card's static dims, then canonicalise.

        Eager and TorchScript modules go through the TorchScript exporter (``dynamo=False``); a ``.pt2``
        program through the dynamo exporter (the ExportedProgram itself), then its module through the
        TorchScript one if that fails. The dynamo exporter starts at opset 18 and converts down to 17.
        """
        import torch

        scalars = _scalar_arguments(model)
        for index, kind in enumerate(scalars[: len(card.inputs)]):
            if kind is not None:
                raise CellError(
                    "convert_error",
                    f"{_card_name(card)}: inputs.{index} ({card.inputs[index].name!r}): the TorchScript forward "
                    f"takes it as a Python {kind}, not a tensor; torch.onnx.export bakes such an argument into the "
                    "graph as a constant, so the ONNX model could not take it as an input. Script a wrapper whose "
                    "forward takes tensors only",
                )
        example = tuple(torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype)) for spec in card.inputs)
        names = {"input_names": [spec.name for spec in card.inputs], "output_names": card.outputs}
        attempts = [(model, {"dynamo": False})]
        if model in _EXPORTED_PROGRAMS:  # the program itself (no second trace), then its module
            program = _EXPORTED_PROGRAMS[model]
            attempts = [(program, {"dynamo": True, "external_data": False, "verbose": False}), *attempts]
        failures = []
        for exported, options in attempts:
            try:
                torch.onnx.export(exported, example, str(path), opset_version=OPSET, **names, **options)
                break
            except Exception as error:  # exporter errors are many types
                failures.append(f"dynamo={options['dynamo']}: {type(error).__name__}: {str(error)[:600]}")
        else:
            raise CellError("convert_error", f"{card.name}: torch.onnx.export failed: " + "; ".join(failures)) from None
        finalize_onnx(path, card)


@zoocompat.hookimpl
def zoocompat_frontends() -> list[PytorchFrontend]:
    """Register the PyTorch frontend."""
    return [PytorchFrontend()]
