"""How a loaded ParagonSR2 model is executed (torch, ONNX Runtime, TensorRT) and the
engine-agnostic runners built on top (tiled image upscaling, temporal video pipeline).

No ComfyUI imports here: ComfyUI services (progress, interrupt, free memory) come in as
plain callables from ``nodes/``.
"""
