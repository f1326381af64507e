"""Argument parsing and the commands: upscale (image, folder or video), export-onnx, build-trt."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..engines.backends import (
    onnx_export,
    registry,
    tensorrt_build,
    tensorrt_engine,
)
from ..engines.backends.engine_cache import Profile, default_models_dir
from ..engines.runtime.checks import NonFiniteOutputError
from ..engines.runtime.files import remove_stale_partials
from ..engines.runtime.options import (
    GRAPH_PRECISIONS,
    TORCH_PRECISIONS,
    parse_sharpness,
)
from ..engines.video import stream, temporal
from ..engines.video.encode import MUXERS
from ..engines.video.options import DEFAULT_QUALITY, MAX_FRAMES_PER_CHUNK, MAX_QUALITY
from . import distributed, jobs, video_job, video_plan
from .checks import (
    OneLineParser,
    UsageError,
    check_output,
    check_output_file,
    check_writable_folder,
    describe_os_error,
    number_in,
    warn,
)
from .image_io import CliError
from .model import engine_for, load_model
from .outputs import check_target
from .progress import Progress

PACK_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
COMMANDS = ("upscale", "export-onnx", "build-trt")


# -- arguments ------------------------------------------------------------------------------
def _sharpness(text: str):
    try:
        return parse_sharpness(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="ParagonSR2 model file (.safetensors/.pth/...); default: the bundled demo model",
    )
    p.add_argument(
        "--sharpness",
        type=_sharpness,
        default=None,
        metavar="auto|ALPHA",
        help="upsampler_alpha of the base path, 0..2; auto = the value in the file (default)",
    )


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default=registry.DEFAULT_BACKEND,
        choices=tuple(registry.BACKENDS),
        help="what runs the network: torch (default), onnxruntime (graph exported on the fly), "
        "tensorrt (engine built once, cached under $PARAGONSR2_MODELS_DIR or ./models), openvino "
        "(CPU, or --device GPU / NPU for Intel; cached there too) or auto (the fastest here: a short "
        "speed test on the CPU, cached; TensorRT or torch on CUDA)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="auto", choices=TORCH_PRECISIONS, help="auto = fp16 on CUDA, fp32 elsewhere")
    p.add_argument(
        "--tile",
        type=number_in(16, 16384, int, zero_ok=True),
        default=0,
        metavar="PX",
        help="LR tile side in pixels, 16..16384; 0 = sized to free memory (default)",
    )


def _size_args(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--factor",
        type=number_in(0.05, 16.0),
        default=None,
        metavar="F",
        help="output size = F x the input (e.g. 1.5 with a 2x or 4x model; bicubic from the model's size); "
        "default: the model's factor",
    )
    size.add_argument(
        "--long-side",
        type=number_in(1, 32768, int),
        default=None,
        metavar="PX",
        help="the output's longer side in pixels, aspect ratio kept; default: the model's factor",
    )


def _video_args(p: argparse.ArgumentParser) -> None:
    names = video_plan.codec_names()
    p.add_argument(
        "--codec",
        default=None,
        metavar="NAME",
        help=f"video encoder: {', '.join(names) or '(needs PyAV)'}; checked against this PyAV build when used; "
        "default: h264 (VP9/AV1 for .webm)",
    )
    p.add_argument(
        "--quality",
        type=number_in(0, MAX_QUALITY, int),
        default=None,
        metavar="CRF",
        help=f"video: constant rate factor 0..{MAX_QUALITY}, lower is better (default {DEFAULT_QUALITY}); "
        "ignored by the lossless codecs",
    )
    p.add_argument(
        "--lossless",
        action="store_true",
        help="video: encode exact 8-bit RGB (H.264 RGB, qp 0, in .mp4/.mkv/.mov) instead of the lossy default",
    )
    p.add_argument(
        "--segment-frames",
        type=number_in(1, 1_000_000, int),
        default=stream.DEFAULT_SEGMENT_FRAMES,
        metavar="N",
        help="video: frames per resumable segment (an interrupted run keeps its finished segments "
        f"in .NAME.paragonsr2-work beside the output and the same command resumes); default "
        f"{stream.DEFAULT_SEGMENT_FRAMES}",
    )
    p.add_argument(
        "--accept-partial",
        action="store_true",
        help="video: a damaged or truncated input gives exit 0 (the frames that decode are written "
        "either way; without this flag the run exits 1 and says where the input ended)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="paragonsr2",
        description="ParagonSR2 super-resolution outside ComfyUI. "
        "'paragonsr2 INPUT' is short for 'paragonsr2 upscale INPUT'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    up = sub.add_parser("upscale", help="upscale an image, every image in a folder, or a video file")
    up.add_argument("input", type=Path, help="image file, folder of images, or video file (needs PyAV)")
    up.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output file (folder for a folder input); default: <name>_ParagonSR2_x<scale> "
        "beside the input, never an existing file",
    )
    up.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    up.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep outputs that already exist (finished by an earlier run: outputs are written "
        "atomically, so an existing one is complete); in a folder, do only the rest",
    )
    up.add_argument(
        "--temporal-strength",
        type=number_in(0, temporal.MAX_STRENGTH),
        default=0.2,
        help=f"video: feature blending with the previous frame, 0..{temporal.MAX_STRENGTH} (0 = per-frame)",
    )
    up.add_argument(
        "--scene-cut-sensitivity",
        type=number_in(0, 1),
        default=None,
        help="video: scene-cut detection sensitivity 0..1 (0 disables); default: the library's",
    )
    up.add_argument(
        "--frames-per-chunk",
        type=number_in(1, MAX_FRAMES_PER_CHUNK, int),
        default=16,
        help=f"video: frames decoded and upscaled at once, 1..{MAX_FRAMES_PER_CHUNK}",
    )
    up.add_argument("--quiet", action="store_true", help="no progress bars")
    _size_args(up)
    _video_args(up)
    _model_args(up)
    _run_args(up)
    distributed.add_arguments(up)  # --workers, --devices, --ray-address, ...

    onnx = sub.add_parser("export-onnx", help="export the model to ONNX")
    onnx.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    onnx.add_argument("--overwrite", action="store_true")
    onnx.add_argument("--precision", default="fp32", choices=GRAPH_PRECISIONS, help="precision inside the graph")
    onnx.add_argument("--temporal", action="store_true", help="export the video (feature-feedback) graph")
    _model_args(onnx)

    trt = sub.add_parser("build-trt", help="build (or reuse from cache) a TensorRT engine; needs CUDA + TensorRT")
    trt.add_argument("--precision", default="fp16", choices=GRAPH_PRECISIONS)
    trt.add_argument("--min-tile", type=int, default=64, help="smallest LR tile side (multiple of 16)")
    trt.add_argument("--opt-tile", type=int, default=256, help="LR tile side to optimise for")
    trt.add_argument("--max-tile", type=int, default=512, help="largest LR tile side")
    trt.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="models folder whose tensorrt/paragonsr2 cache receives the engine (use ComfyUI's "
        "models folder to share engines with the nodes); default $PARAGONSR2_MODELS_DIR or ./models",
    )
    trt.add_argument("--temporal", action="store_true", help="build the video (feature-feedback) engine")
    _model_args(trt)
    return parser


# -- commands -------------------------------------------------------------------------------
def cmd_upscale(args) -> int:
    src: Path = args.input
    if not src.exists():
        raise CliError(f"input not found: {src}")
    kind = jobs.classify(src)
    plan = None
    if args.output is not None:  # everything about an explicit output is checked before the model loads
        check_output(args.output, kind)
        if kind != "folder" and args.skip_existing and args.output.is_file():
            print(f"kept {args.output}: it exists and --skip-existing was given")  # atomic: it is complete
            return 0
        if kind != "folder":
            check_target(args.output, [src], args.overwrite)
        plan = _video_plan(kind, args.output, src, args)
    elif kind == "video":
        video_plan.have_av()  # fail before loading the model when PyAV is missing
    if not args.model.is_file():
        raise CliError(f"model file not found: {args.model}")
    if distributed.requested(args):
        return distributed.run(args, kind, plan)
    engine = engine_for(args, video=kind == "video")
    dst = args.output or jobs.default_target(src, kind, engine.info.scale)
    if args.output is None:
        check_output(dst, kind)
        plan = _video_plan(kind, dst, src, args)
    if kind == "folder":
        return jobs.run_folder(engine, src, dst, args)
    remove_stale_partials(dst.parent)
    if kind == "video" and plan is not None:
        return video_job.run_video(engine, src, dst, args, plan)
    if kind == "video":
        return video_job.video_to_animation(engine, src, dst, args, video_plan.video_options(args))
    return jobs.run_image(engine, src, dst, args)


def _video_plan(kind: str, dst: Path, src: Path, args):
    """For a video into a container: the encoder, the options and the streams copied, said up
    front (None for an animated-image output, or an input that is not a video)."""
    if kind != "video" or dst.suffix.lower() not in MUXERS:
        if kind == "video":
            warn(f"{src.name}: an animation output holds no audio; audio and subtitles are not kept")
        return None
    return video_plan.plan_and_say(args, src, dst)


def cmd_export_onnx(args) -> int:
    if args.output.suffix.lower() != ".onnx":
        raise UsageError(f"--output {args.output}: ONNX graphs are written as .onnx files")
    check_output_file(args.output)
    dst = check_target(args.output, [args.model], args.overwrite)
    model = load_model(args.model, args.sharpness)
    start = time.perf_counter()
    try:
        onnx_export.export_onnx(model, dst, precision=args.precision, video=args.temporal)
    except onnx_export.ExportError as exc:
        raise CliError(f"ONNX export failed: {exc}") from None
    except ImportError as exc:  # onnx / onnxscript missing
        raise CliError(f"ONNX export needs the onnx package ({exc}): pip install onnx onnxscript") from None
    kind = "video (temporal)" if args.temporal else "image"
    print(
        f"wrote {dst} ({model.variant} x{model.scale}, {args.precision}, {kind} graph) "
        f"in {time.perf_counter() - start:.2f} s"
    )
    return 0


def cmd_build_trt(args) -> int:
    """Build the engine into the same cache the ComfyUI nodes use (or reuse it)."""
    reason = tensorrt_engine.unavailable_reason()
    if reason:  # before loading the model
        raise CliError(f"cannot build a TensorRT engine here: {reason}")
    try:
        profile = Profile(min_side=args.min_tile, opt_side=args.opt_tile, max_side=args.max_tile)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_writable_folder(args.models_dir or default_models_dir(), "TensorRT engines")
    model = load_model(args.model, args.sharpness)
    start = time.perf_counter()
    progress = Progress("TensorRT build")
    try:
        entry = tensorrt_engine.ensure_engine_bytes(
            model,
            precision=args.precision,
            profile=profile,
            video=args.temporal,
            models_dir=args.models_dir or default_models_dir(),
            progress=progress,
        )
    except onnx_export.ExportError as exc:
        raise CliError(f"ONNX export failed: {exc}") from None
    except (tensorrt_build.BuildFailed, tensorrt_build.BuildCancelled, tensorrt_build.TensorRTUnavailable) as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    if not entry.built:
        print(f"TensorRT engine already built: {entry.path}")
    else:
        print(
            f"wrote TensorRT engine {entry.path} ({len(entry.data) / 1e6:.1f} MB) "
            f"in {time.perf_counter() - start:.2f} s"
        )
    return 0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every ``finally`` and atomic output cleans up
    exactly as for Ctrl-C (Python's default for SIGTERM is to die on the spot)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 1 failed while working (unreadable input, model, device);
    2 refused before any work (bad option or output); 130 Ctrl-C; 143 SIGTERM."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "upscale")  # 'paragonsr2 photo.png' = 'paragonsr2 upscale photo.png'
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"upscale": cmd_upscale, "export-onnx": cmd_export_onnx, "build-trt": cmd_build_trt}[args.command]
    previous = _install(signal.SIGTERM, _on_sigterm)
    try:
        return handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no partial output was left", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: no partial output was left", file=sys.stderr)
        return 143
    except OSError as exc:  # a disk filling up, a folder removed mid-run: the OS's words, no class name
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except NonFiniteOutputError as exc:  # broken weights: name the file (the runners do not know it)
        model = getattr(args, "model", None)
        print(f"error: {exc.describe(model.name if model else None)}", file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: a one-line message and a failing exit code
        print(f"error: {exc or 'unexpected failure'} (set PARAGONSR2_DEBUG=1 to see where)", file=sys.stderr)
        if os.environ.get("PARAGONSR2_DEBUG"):
            raise
        return 1
    finally:
        _install(signal.SIGTERM, previous)


def _install(signum, handler):
    """Set a signal handler where Python allows it (the main thread); returns the old one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signum, handler)
