"""Tiled upscaling of images of any size with any engine."""
