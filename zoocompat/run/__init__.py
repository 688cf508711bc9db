"""Running cells: the matrix, the per-cell pipeline, quantize dispatch, AutoQuant, output reuse."""
