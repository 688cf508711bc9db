"""Gating an SDK upgrade: compare two runs, bisect releases, known failures."""
