"""Inference nodes: `tflite` runs a TensorFlow Lite model on LiteRT over each batch of events."""
