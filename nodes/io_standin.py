"""A small standalone stand-in for ComfyUI's V3 node API (``comfy_api``'s ``io``), for use without ComfyUI.

The node classes are written once, against ``io`` from ``nodes/comfy_io.py``. Inside ComfyUI that is
the real ``comfy_api`` module; from the command line and in tests (no ComfyUI installed) it is this
module, which offers the same names and argument names for the subset the pack uses, so the same
class code runs in both. It implements only what the pack's nodes and tests need: schema objects
that hold their fields, ``NodeOutput`` with ``.args``, ``cls.hidden`` and a classic ``INPUT_TYPES``
view of a schema (as ComfyUI derives it for V3 nodes). It never talks to a server and validates
nothing beyond unique input/output ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from enum import Enum
from typing import Any

__all__ = [
    "Boolean",
    "Combo",
    "ComfyNode",
    "ComfyType",
    "Custom",
    "Float",
    "FolderType",
    "Hidden",
    "Image",
    "Input",
    "Int",
    "NodeOutput",
    "Output",
    "Schema",
    "String",
    "UpscaleModel",
    "Video",
]


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class Input:
    """One input socket/widget of a schema; ``io_type`` comes from the type class it belongs to."""

    io_type = "*"

    def __init__(self, id: str, display_name=None, optional=False, tooltip=None, lazy=None, extra_dict=None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = dict(extra_dict or {})

    def as_dict(self) -> dict:
        """The options ComfyUI's classic INPUT_TYPES carries for this input."""
        return _without_none({"display_name": self.display_name, "tooltip": self.tooltip, "lazy": self.lazy}) | (
            _without_none(self.extra_dict)
        )


_WIDGET_SETTINGS = frozenset(
    ("min", "max", "step", "round", "display_mode", "control_after_generate", "label_on", "label_off")
    + ("multiline", "placeholder", "dynamic_prompts", "upload", "image_folder", "remote")
)


class WidgetInput(Input):
    """An input with a widget (a value typed in the node) and a default."""

    def __init__(
        self,
        id: str,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        socketless=None,
        force_input=None,
        **extra,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy)
        self.default = default
        self.socketless = socketless
        self.force_input = force_input
        self.extra = extra  # type-specific settings (min, max, step, options, ...), kept by name

    def __getattr__(self, name):
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        if name in _WIDGET_SETTINGS:  # the real classes hold these as attributes, None when not given
            return None
        raise AttributeError(name)

    def as_dict(self) -> dict:
        return (
            super().as_dict()
            | _without_none({"default": self.default, "socketless": self.socketless, "forceInput": self.force_input})
            | _without_none(self.extra)
        )


class Output:
    io_type = "*"

    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list


# The module-level classes under other names: inside ComfyType's body, "Input" is its own attribute.
_BaseInput = Input
_BaseOutput = Output


class ComfyType:
    """A type class like ``io.Int``: nested ``Input`` / ``Output`` classes bound to its ``io_type``.

    A subclass names its ``io_type`` and, for widgets, the ``Input`` base; the nested classes get
    that io_type when the subclass is made, so each type is declared in one line of data."""

    io_type = "*"
    Input: type[_BaseInput] = _BaseInput
    Output: type[_BaseOutput] = _BaseOutput

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.Input = type("Input", (cls.Input,), {"io_type": cls.io_type})
        cls.Output = type("Output", (cls.Output,), {"io_type": cls.io_type})


class WidgetType(ComfyType):
    """A type whose inputs are widgets (a value typed in the node, with a default)."""

    Input: type[WidgetInput] = WidgetInput


class Boolean(WidgetType):
    io_type = "BOOLEAN"


class Int(WidgetType):
    io_type = "INT"


class Float(WidgetType):
    io_type = "FLOAT"


class String(WidgetType):
    io_type = "STRING"


class Image(ComfyType):
    io_type = "IMAGE"


class Video(ComfyType):
    io_type = "VIDEO"


class UpscaleModel(ComfyType):
    io_type = "UPSCALE_MODEL"


class _ComboInput(WidgetInput):
    io_type = "COMBO"

    def __init__(
        self,
        id: str,
        options: Iterable[Any] | type[Enum] | None = None,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        **kw,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, **kw)
        if isinstance(options, type) and issubclass(options, Enum):
            self.options = [member.value for member in options]
        else:
            self.options = list(options or [])

    def as_dict(self) -> dict:
        return super().as_dict() | {"options": self.options}


class Combo(ComfyType):
    io_type = "COMBO"
    Input: type[_ComboInput] = _ComboInput


def Custom(io_type: str) -> type[ComfyType]:
    """A type for sockets of our own (``Custom("PARAGONSR2_MODEL")``), with ``.Input`` / ``.Output``."""
    return type(f"Custom_{io_type}", (ComfyType,), {"io_type": io_type})


class FolderType(str, Enum):
    """ComfyUI's folders a saved result lives in (``ui.SavedResult``'s third field)."""

    input = "input"
    output = "output"
    temp = "temp"


class Hidden(str, Enum):
    """Values ComfyUI passes to a node without a socket; the node reads them from ``cls.hidden``."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


class HiddenValues:
    """``cls.hidden``: the hidden values by name; anything not given reads as None."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __getattr__(self, name):
        return None


@dataclasses.dataclass
class Schema:
    """What a node is: id, names, sockets. Field names are those of ``comfy_api``'s Schema."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    hidden: list = dataclasses.field(default_factory=list)
    description: str = ""
    search_aliases: list = dataclasses.field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        ids = [i.id for i in self.inputs or []] + [o.id for o in self.outputs or [] if o.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.node_id}: input and output ids must be unique: {ids}")


class NodeOutput:
    """A node's result: the output values in order (``.args``) and optional UI data."""

    def __init__(self, *args: Any, ui=None, expand=None, block_execution=None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args or None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    """Base of a V3 node: subclasses define ``define_schema`` and ``execute`` as classmethods."""

    hidden: Any = HiddenValues()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        """The classic view ComfyUI serves for a V3 node: required/optional/hidden sections in order."""
        schema = cls.define_schema()
        schema.validate()
        sections: dict = {"required": {}}
        for item in schema.inputs or []:
            options = item.as_dict()
            sections.setdefault("optional" if item.optional else "required", {})[item.id] = (item.io_type, options)
        for hidden in schema.hidden or []:
            sections.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        return sections


class VideoFromFile:
    """Core's file-backed VIDEO (comfy_api's VideoFromFile), the part the pack reads: the file and
    the trim window (0.33's ``start_time`` / ``duration``; 0 = from the start / to the end)."""

    def __init__(self, file, *, start_time: float = 0, duration: float = 0):
        self._file, self._start_time, self._duration = file, float(start_time), float(duration)

    def get_stream_source(self):
        if hasattr(self._file, "seek"):
            self._file.seek(0)
        return self._file

    def get_active_trim_window(self) -> tuple[float, float]:
        return max(self._start_time, 0.0), self._duration
