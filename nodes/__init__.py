"""ComfyUI node classes: thin V3 (``io.ComfyNode``) wrappers over ``engines`` and ``paragonsr2_arch``.

Each topic module lists its node classes in ``NODES``; this module registers them one way:
NODE_CLASS_MAPPINGS keyed by each schema's node_id and NODE_DISPLAY_NAME_MAPPINGS from each
schema's display_name (no ``comfy_entrypoint``: ComfyUI 0.33 ignores it when
NODE_CLASS_MAPPINGS exists, and 0.3.64 reads NODE_CLASS_MAPPINGS only).
"""

import importlib
import logging

# Topic modules, in the order their nodes appear. Modules still being written (streaming
# video, engine selection) are optional until they exist: a missing one is skipped quietly,
# a broken one is logged and skipped so the other nodes still load.
TOPIC_MODULES = ("image_nodes", "video_nodes", "tensorrt_nodes")
OPTIONAL_TOPIC_MODULES = ("stream_video_nodes", "engine_nodes")


def _topic_modules() -> list:
    modules = [importlib.import_module(f".{name}", __name__) for name in TOPIC_MODULES]
    for name in OPTIONAL_TOPIC_MODULES:
        try:
            modules.append(importlib.import_module(f".{name}", __name__))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                logging.getLogger("ParagonSR2").exception("ParagonSR2: nodes/%s.py could not be imported", name)
        except Exception:
            logging.getLogger("ParagonSR2").exception("ParagonSR2: nodes/%s.py could not be imported", name)
    return modules


def _register(modules) -> tuple[dict, dict]:
    classes: dict = {}
    display_names: dict = {}
    for module in modules:
        for node_cls in module.NODES:
            node_schema = node_cls.define_schema()
            if node_schema.node_id in classes:
                raise ValueError(f"ParagonSR2: node id {node_schema.node_id!r} is defined twice")
            classes[node_schema.node_id] = node_cls
            display_names[node_schema.node_id] = node_schema.display_name or node_schema.node_id
    return classes, display_names


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = _register(_topic_modules())
