"""The one place node modules get ComfyUI's V3 node API (``io``) from.

Node modules write ``from .comfy_io import io, schema`` and define ``io.ComfyNode`` classes.

- Inside ComfyUI: ``comfy_api.v0_0_2``'s ``io`` (a pinned API version, as ComfyUI's maintainers
  advise for custom nodes), else ``comfy_api.latest``'s.
- Without ComfyUI (command line, tests): ``nodes/io_standin.py``, a small module of ours with the
  same names for the subset the pack uses, so the same node classes still import and run.

Versions differ in what a ``Schema`` accepts (0.3.64 has neither ``search_aliases`` nor
``DynamicCombo``; 0.33 has both), so features are detected here, once, and ``schema(...)``
drops the fields the running version lacks instead of failing on them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING


def _comfy_api_io():
    """ComfyUI's io (pinned version first: its meaning stays when "latest" moves on), or None
    standalone. A comfy_api that exists but fails to import is logged, not fatal."""
    try:
        from comfy_api.v0_0_2 import io as pinned

        return pinned
    except ModuleNotFoundError as exc:
        if exc.name == "comfy_api":
            return None  # no ComfyUI here: command line, tests
        missing = exc
    except Exception as exc:  # e.g. comfy_api present but a GPU driver missing outside a started ComfyUI
        missing = exc
    try:
        from comfy_api.latest import io as latest

        return latest
    except Exception as exc:
        logging.getLogger("ParagonSR2").warning(
            "ParagonSR2: ComfyUI's comfy_api did not import (%s; %s): the nodes need it inside ComfyUI; "
            "outside ComfyUI they run on the pack's stand-in",
            missing,
            exc,
        )
        return None


_running_io = _comfy_api_io()
IN_COMFYUI_API: bool = _running_io is not None
if TYPE_CHECKING or _running_io is None:
    # The type checker reads the stand-in: it declares, under the same names, the subset of the
    # API the pack uses (comfy_api itself is not installed where the pack is checked).
    from . import io_standin as io
else:
    io = _running_io

_SCHEMA_FIELDS = frozenset(f.name for f in dataclasses.fields(io.Schema))
HAS_SEARCH_ALIASES: bool = "search_aliases" in _SCHEMA_FIELDS
HAS_DYNAMIC_COMBO: bool = hasattr(io, "DynamicCombo")

__all__ = [
    "HAS_DYNAMIC_COMBO",
    "HAS_SEARCH_ALIASES",
    "IN_COMFYUI_API",
    "VideoFromFile",
    "io",
    "node_inputs",
    "preview_video",
    "schema",
]


def schema(**fields) -> io.Schema:
    """``io.Schema(**fields)`` without the fields this ComfyUI's Schema does not have (e.g.
    ``search_aliases`` on 0.3.64), so one node definition serves every supported version."""
    return io.Schema(**{name: value for name, value in fields.items() if name in _SCHEMA_FIELDS})


def node_inputs(node_cls) -> list:
    """The input objects of a V3 node's schema, in order (tests build default arguments from them)."""
    return list(node_cls.define_schema().inputs or [])


# -- VIDEO values --------------------------------------------------------------------------------
# Core's file-backed VIDEO (what Load Video gives): a node that returns one over a finished file
# lets core's Save Video store it by remuxing the packets (no second encode). Standalone, a small
# stand-in with the part of its interface the pack reads (io_standin.VideoFromFile).
if IN_COMFYUI_API:
    try:
        from comfy_api.v0_0_2 import InputImpl as _InputImpl
        from comfy_api.v0_0_2 import ui
    except Exception:  # as for io above: the pinned version unusable, latest used
        from comfy_api.latest import InputImpl as _InputImpl
        from comfy_api.latest import ui
    VideoFromFile = _InputImpl.VideoFromFile
else:
    VideoFromFile = io.VideoFromFile
    ui = None


def preview_video(filename: str, subfolder: str, folder: str = "temp"):
    """UI data that shows a video file of ComfyUI's ``folder`` (temp/output) on the node; None standalone."""
    if ui is None:
        return None
    return ui.PreviewVideo([ui.SavedResult(filename, subfolder, io.FolderType(folder))])
