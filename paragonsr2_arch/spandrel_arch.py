"""ParagonSR2 as a spandrel architecture, so ComfyUI's core "Load Upscale Model" (and any node
taking ``UPSCALE_MODEL``) can load and run ParagonSR2 files.

spandrel is optional: nothing here imports it until a function is called, and ``register``
returns False (with the reason logged) when it cannot be imported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .checkpoint import load_model, normalize_state_dict
from .detect import looks_like_paragonsr2
from .errors import ModelLoadError
from .network import ParagonSR2
from .window_pad import padded_forward

ARCH_ID = "ParagonSR2"
logger = logging.getLogger("ParagonSR2")
_arch_instance = None


def detect(state_dict: Mapping[str, object]) -> bool:
    """True only for ParagonSR2 state dicts (current or legacy key names)."""
    if not looks_like_paragonsr2(state_dict):
        try:  # legacy names are mapped by normalisation; non-tensor values mean "not ours"
            state_dict = normalize_state_dict(state_dict)
        except ModelLoadError:
            return False
        if not looks_like_paragonsr2(state_dict):
            return False
    return True


def _architecture():
    """The spandrel ``Architecture`` instance (class built lazily: spandrel is optional)."""
    global _arch_instance
    if _arch_instance is None:
        from spandrel import Architecture

        class ParagonSR2Arch(Architecture):
            def __init__(self) -> None:
                super().__init__(id=ARCH_ID, name="ParagonSR2", detect=detect)

            def load(self, state_dict):
                # spandrel hands over the file's tensors without its metadata, so the
                # sharpness is the published models' training value (0.0); see docs/nodes.md.
                return descriptor_for_model(load_model(state_dict), state_dict, architecture=self)

        _arch_instance = ParagonSR2Arch()
    return _arch_instance


def descriptor_for_model(model: ParagonSR2, state_dict: Mapping | None = None, architecture=None):
    """Wrap a loaded ParagonSR2 model in a spandrel ``ImageModelDescriptor``.

    Calling it runs ``padded_forward``: photo / pro inputs are reflect-padded to a multiple of 16
    and the output cropped, as upstream's inference and the pack's own nodes do, so core's
    Upscale Image (using Model) gets the same borders; realtime / stream run unpadded."""
    from spandrel import ImageModelDescriptor, SizeRequirements

    cfg = model.config
    tags = [cfg.variant, f"{cfg.num_feat}nf", f"{cfg.num_groups}x{cfg.num_blocks}"]
    if not cfg.attention and cfg.variant in ("photo", "pro"):
        tags.append("no-attention")
    return ImageModelDescriptor(
        model,
        dict(state_dict) if state_dict is not None else model.state_dict(),
        architecture=architecture or _architecture(),
        purpose="SR" if model.scale > 1 else "Restoration",
        tags=tags,
        supports_half=True,
        supports_bfloat16=True,
        scale=int(model.scale),
        input_channels=3,
        output_channels=3,
        # Any size works for the network; the window padding is padded_forward's (call_fn), not
        # spandrel's (which would pad by replication where reflection cannot reach).
        size_requirements=SizeRequirements(minimum=1),
        call_fn=padded_forward,
    )


def register(registry=None) -> bool:
    """Add ParagonSR2 to spandrel's registry (default ``MAIN_REGISTRY``), ahead of the built-in
    architectures; an existing ParagonSR2 entry is kept. False when spandrel is unusable."""
    try:
        if registry is None:
            from spandrel import MAIN_REGISTRY as registry
        from spandrel import ArchSupport
    except Exception as exc:  # ImportError, or torchvision failing inside spandrel's import
        logger.info(
            "ParagonSR2: spandrel not usable (%s: %s); core upscale nodes will not load ParagonSR2 files",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return False
    if ARCH_ID in registry:
        return True
    # Detected first: detect() is specific (ParagonSR2's own layer names), while some built-in
    # detectors are loose enough that they could claim a file that is not theirs.
    try:
        before = tuple(support.architecture.id for support in registry.architectures("insertion"))
    except (AttributeError, TypeError):  # older spandrel: plain insertion order
        before = ()
    registry.add(ArchSupport(_architecture(), detect, before=before), ignore_duplicates=True)
    return True
