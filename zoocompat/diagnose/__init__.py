"""Explaining a failure: first bad layer, repro folders, op probes."""
