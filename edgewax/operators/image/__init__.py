"""Image nodes: resize, crop, gray, normalize, to_tensor and the motion gate, on numpy frames."""
