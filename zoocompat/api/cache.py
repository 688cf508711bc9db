"""A content-addressed artifact cache shared by every xdist worker.

An entry is a folder named by the hash of what built it (inputs, options,
tool versions). It is built once: the builder runs under a file lock into a
temporary folder that is renamed into place when complete, so a reader sees
either nothing or a whole entry. Each entry carries a manifest of its files'
sha256; an entry whose files no longer match is rebuilt, not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

MANIFEST = "manifest.json"


def default_root() -> Path:
    """``$ZOOCOMPAT_CACHE`` or ``~/.cache/zoocompat``."""
    return Path(os.environ.get("ZOOCOMPAT_CACHE") or Path.home() / ".cache" / "zoocompat")


def key_of(*parts: Any) -> str:
    """Stable short hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def _intact(folder: Path) -> bool:
    try:
        recorded = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return recorded == _manifest(folder)


class ArtifactCache:
    """Folders of built artifacts, keyed by stage and content hash."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_root()

    def entry(self, stage: str, key: str, build: Callable[[Path], None]) -> Path:
        """Return the folder for ``stage``/``key``, building it with ``build(tmpdir)`` if absent."""
        final = self.root / stage / key
        if final.is_dir() and _intact(final):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if final.is_dir():
                if _intact(final):
                    return final
                shutil.rmtree(final)  # corrupted or half-written by an older version: rebuild
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
            try:
                build(tmp)
                (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp), indent=1))
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return final
