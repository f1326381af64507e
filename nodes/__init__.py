"""ComfyUI node classes: thin wrappers over ``engines`` and ``paragonsr2_arch``.

Each topic module exports its own NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS; this
module merges them for the pack's ``__init__``.
"""

from . import image_nodes, tensorrt_nodes, video_nodes

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in (image_nodes, video_nodes, tensorrt_nodes):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
