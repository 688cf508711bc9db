#!/usr/bin/env bash
# One entry point for a fresh machine (only Python 3.11 and pip needed):
#   ./run.sh matrix [pytest args]   set up, then run the conformance matrix  -> reports/latest/
#   ./run.sh tests  [pytest args]   set up, then run the unit tests
#   ./run.sh smoke  [pytest args]   set up, then run the smoke slice of the matrix
#   ./run.sh setup                  only set up .venv (about 9 GB, a few minutes the first time)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
STAMP="$VENV/.zoocompat-installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"

setup() {
  if [ -f "$STAMP" ]; then return; fi
  echo "zoocompat: creating $VENV and installing the stack (torch, tensorflow, AIMET, onnxruntime-qnn; ~9 GB, minutes)..."
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # constraints.txt pins the whole resolved environment (pyproject pins the direct dependencies),
  # so a fresh machine gets the set the suite was tested with, without resolver backtracking.
  "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e ".[stack,dev]"
  rm -f "$VENV"/.zoocompat-installed-*
  touch "$STAMP"
  echo "zoocompat: environment ready."
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  matrix) setup; exec "$VENV/bin/python" -m pytest -n auto conformance/ "$@" ;;
  smoke) setup; exec "$VENV/bin/python" -m pytest -n auto conformance/ -m smoke "$@" ;;
  tests) setup; exec "$VENV/bin/python" -m pytest -n auto tests/ "$@" ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
