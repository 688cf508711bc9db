"""Models in: cards, weight sources, card data (inputs and labels), input lists, ONNX folding."""
