"""Inference: image loading, tiled full-resolution matting, foreground colours."""
