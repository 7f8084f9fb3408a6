"""Signal nodes: frame a sample stream per key, compute features of frames, running z-scores."""
