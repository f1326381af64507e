"""ComfyUI-ParagonSR2: ParagonSR2 super-resolution nodes for ComfyUI.

ComfyUI imports this folder as a package (under a name derived from its path), so everything
inside uses relative imports only. Importing it needs neither ComfyUI, TensorRT, onnxruntime
nor a GPU.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
