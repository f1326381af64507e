"""Execution backends: torch, ONNX Runtime, ONNX export, TensorRT build/run and its engine cache."""
