"""Where the matrix test lives, and when a session collects it without a test path.

The matrix test ships inside the package (:mod:`zoocompat.pytest_plugin.matrix`),
so an installed zoocompat runs the matrix without this repository:
``pytest -p zoocompat --zoo DIR`` (or ``--zoo-models M``) with no test path
collects that module. A test path on the command line always wins: the
repository's ``conformance/`` folder re-exports the same test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: The shipped module holding ``test_cell``, the one test the matrix parametrizes.
MATRIX_MODULE = Path(__file__).with_name("matrix.py")
#: Options that say "run the matrix" when no test path is given.
MATRIX_OPTIONS = ("zoo", "zoo_models")


def collect_shipped_matrix(config: pytest.Config) -> bool:
    """Point the session at :data:`MATRIX_MODULE` when a matrix option is given and no test path is.

    ``config.args`` then holds only the shipped module (pytest's ``testpaths`` or
    the invocation folder are dropped). Returns whether it did. Every xdist worker
    parses the same command line, so every worker decides the same.
    """
    if config.args_source is pytest.Config.ArgsSource.ARGS:
        return False
    if not any(config.getoption(name) for name in MATRIX_OPTIONS):
        return False
    config.args = [str(MATRIX_MODULE)]
    return True


def is_matrix_path(arg: str) -> bool:
    """Whether a command-line test path (``path[::node]``) is the matrix: inside a ``conformance``
    folder, or the shipped matrix module itself.
    """
    path = Path(str(arg).split("::")[0]).resolve()
    return "conformance" in path.parts or path == MATRIX_MODULE.resolve()
