"""ComfyUI-ParagonSR2: ParagonSR2 super-resolution nodes for ComfyUI.

ComfyUI imports this folder as a package (under a name derived from its path), so everything
inside uses relative imports only. Importing it needs neither ComfyUI, TensorRT, onnxruntime
nor a GPU.
"""

import logging

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS


def _register_with_spandrel() -> None:
    """Let core "Load Upscale Model" load ParagonSR2 files; never fatal (spandrel is optional)."""
    try:
        from .paragonsr2_arch.spandrel_arch import register

        register()
    except Exception:  # a broken spandrel must not stop the nodes from loading
        logging.getLogger("ParagonSR2").warning("ParagonSR2: spandrel registration failed", exc_info=True)


_register_with_spandrel()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
