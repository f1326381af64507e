"""What a video output will be, decided before any frame is upscaled: the encoder (--codec,
--lossless, checked against this PyAV build), the video options (one VideoOptions value, the
same the nodes and the Ray workers use), and which audio/subtitle streams are copied.

A bad pair (a codec the build lacks, a container that cannot hold it) is refused here, so it
costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engines.tiling.output_size import FACTOR, LONG_SIDE
from ..engines.video import encode, remux
from ..engines.video.container import PyAVMissing, require_av
from ..engines.video.options import LOSSLESS, VideoOptions
from .checks import UsageError, warn
from .image_io import CliError


@dataclass(frozen=True)
class VideoPlan:
    codec: str  # encode.py codec choice the writer gets
    options: VideoOptions
    streams: remux.StreamPlan  # audio/subtitle streams copied or dropped (with the reason)


def have_av() -> None:
    """PyAV, or a one-line CliError with the install line (said before the model loads)."""
    try:
        require_av()
    except PyAVMissing as exc:
        raise CliError(str(exc)) from None


def codec_names() -> list[str]:
    """Every --codec choice (whether or not this build has it: checked when used)."""
    try:
        return [c.name for c in encode.encoder_choices()]
    except PyAVMissing:
        return []


def choose_codec(args, dst: Path) -> str:
    """The writer's codec for ``dst``: --lossless, else --codec, else the container's default;
    UsageError (exit 2) for a codec this build lacks or the container cannot hold."""
    have_av()
    suffix = dst.suffix.lower()
    wanted = getattr(args, "codec", None)
    if getattr(args, "lossless", False):
        if wanted not in (None, LOSSLESS):
            raise UsageError(f"--lossless is the {LOSSLESS!r} codec; drop --codec {wanted} or --lossless")
        wanted = LOSSLESS
    if wanted is None:
        try:
            return encode.default_codec(suffix)
        except ValueError as exc:
            raise UsageError(f"{exc}; choose .mp4 or .mkv") from None
    try:
        choice = encode.codec_choice(wanted)
    except ValueError as exc:
        raise UsageError(f"--codec: {exc}") from None
    if not choice.available:
        usable = ", ".join(c.name for c in encode.encoder_choices() if c.available and suffix in c.containers)
        raise UsageError(f"--codec {wanted}: {choice.why_not}; usable here for {suffix}: {usable or 'none'}")
    if suffix not in choice.containers:
        raise UsageError(f"--codec {wanted}: a {suffix} file cannot hold it; it goes in {' '.join(choice.containers)}")
    return wanted


def video_options(args, codec: str = "h264") -> VideoOptions:
    """The command's options as the one VideoOptions value (engines/video/options.py); what the
    command leaves unset keeps VideoOptions' default."""
    given: dict = {}
    if getattr(args, "factor", None) is not None:
        given.update(output_size=FACTOR, output_factor=args.factor)
    elif getattr(args, "long_side", None) is not None:
        given.update(output_size=LONG_SIDE, output_long_side=args.long_side)
    if args.scene_cut_sensitivity is not None:
        given["scene_cut_sensitivity"] = args.scene_cut_sensitivity
    if getattr(args, "quality", None) is not None:
        given["quality"] = args.quality
    try:
        return VideoOptions(
            temporal_strength=args.temporal_strength,
            tile_size=args.tile,
            frames_per_chunk=args.frames_per_chunk,
            codec=codec,
            **given,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def plan_video(args, src: Path, dst: Path) -> VideoPlan:
    """Everything about a video output, checked before any work."""
    codec = choose_codec(args, dst)
    try:
        streams = remux.stream_plan(src, dst.suffix)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # PyAV's own errors: the input cannot be opened
        raise CliError(f"cannot open video {src}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return VideoPlan(codec, video_options(args, codec), streams)


def plan_and_say(args, src: Path, dst: Path) -> VideoPlan:
    """plan_video, and the streams the output cannot hold said up front (nothing is dropped silently)."""
    plan = plan_video(args, src, dst)
    for dropped in plan.streams.dropped:
        warn(f"{src.name}: not kept: {dropped}")
    return plan
