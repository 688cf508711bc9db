"""Judging a cell: paired intervals on the metric drop, and fidelity against a reference run."""
