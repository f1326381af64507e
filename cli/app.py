"""Argument parsing and the commands: upscale (image, folder or video), export-onnx, build-trt."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import paragonsr2_arch as arch
from ..engines.backends import onnx_export, tensorrt_build, tensorrt_engine, torch_engine
from ..engines.tiling import runner as tiling
from ..engines.video import temporal
from ..engines.runtime.contract import PRECISIONS, parse_sharpness
from ..engines.backends.engine_cache import Profile, default_models_dir
from . import video_io
from .image_io import IMAGE_SUFFIXES, CliError, load_image, save_image
from .outputs import check_target, default_output
from .progress import Progress
from .video_io import VIDEO_SUFFIXES

PACK_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
COMMANDS = ("upscale", "export-onnx", "build-trt")
GRAPH_PRECISIONS = tuple(onnx_export.PRECISIONS)  # what ONNX graphs and TensorRT engines hold


# -- arguments ------------------------------------------------------------------------------
def _sharpness(text: str):
    try:
        return parse_sharpness(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="ParagonSR2 model file (.safetensors/.pth/...); default: the bundled demo model")
    p.add_argument("--sharpness", type=_sharpness, default=None, metavar="auto|ALPHA",
                   help="upsampler_alpha of the base path, 0..2; auto = the value in the file (default)")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = fp16 on CUDA, fp32 elsewhere")
    p.add_argument("--tile", type=int, default=0, metavar="PX",
                   help="LR tile side in pixels; 0 = sized to free memory (default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paragonsr2", description="ParagonSR2 super-resolution outside ComfyUI. "
        "'paragonsr2 INPUT' is short for 'paragonsr2 upscale INPUT'.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("upscale", help="upscale an image, every image in a folder, or a video file")
    up.add_argument("input", type=Path, help="image file, folder of images, or video file (needs PyAV)")
    up.add_argument("-o", "--output", type=Path, default=None,
                    help="output file (folder for a folder input); default: <name>_ParagonSR2_x<scale> "
                         "beside the input, never an existing file")
    up.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    up.add_argument("--temporal-strength", type=float, default=0.2,
                    help="video: feature blending with the previous frame, 0..0.95 (0 = per-frame)")
    up.add_argument("--scene-cut-sensitivity", type=float, default=None,
                    help="video: scene-cut detection sensitivity (0 disables); default: the library's")
    up.add_argument("--frames-per-chunk", type=int, default=16, help="video: frames decoded and upscaled at once")
    up.add_argument("--quiet", action="store_true", help="no progress bars")
    _model_args(up)
    _run_args(up)

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
    trt.add_argument("--models-dir", type=Path, default=None,
                     help="models folder whose tensorrt/paragonsr2 cache receives the engine (use ComfyUI's "
                          "models folder to share engines with the nodes); default $PARAGONSR2_MODELS_DIR or ./models")
    trt.add_argument("--temporal", action="store_true", help="build the video (feature-feedback) engine")
    _model_args(trt)
    return parser


# -- shared steps ---------------------------------------------------------------------------
def load_model(path: Path, sharpness):
    if not path.is_file():
        raise CliError(f"model file not found: {path}")
    try:
        return arch.load_model(path, upsampler_alpha=sharpness)
    except arch.ModelLoadError as exc:
        raise CliError(f"cannot load model {path}: {exc}") from None


def make_engine(args):
    model = load_model(args.model, args.sharpness)
    try:
        device = torch_engine.pick_device(args.device)
        return torch_engine.TorchEngine(model, device=device, precision=args.precision)
    except (RuntimeError, ValueError) as exc:
        raise CliError(f"cannot use device {args.device!r} with precision {args.precision!r}: {exc}") from None


def upscale_image_file(engine, src: Path, dst: Path, tile: int, quiet: bool = False) -> tuple[int, int]:
    """Upscale one image file into ``dst``; returns the output (width, height)."""
    image = load_image(src)
    progress = Progress(src.name, enabled=not quiet)
    try:
        out = tiling.upscale_image(engine, image, tile_size=tile, progress=progress)
    finally:
        progress.close()
    save_image(out[0], dst)
    return out.shape[2], out.shape[1]


# -- commands -------------------------------------------------------------------------------
def cmd_upscale(args) -> int:
    src: Path = args.input
    if not src.exists():
        raise CliError(f"input not found: {src}")
    kind = "folder" if src.is_dir() else "video" if src.suffix.lower() in VIDEO_SUFFIXES else "image"
    if kind == "image" and src.suffix.lower() not in IMAGE_SUFFIXES:
        raise CliError(f"{src}: unknown file type {src.suffix!r}; images: {' '.join(IMAGE_SUFFIXES)}; "
                       f"videos: {' '.join(VIDEO_SUFFIXES)}")
    if kind == "video":
        video_io._av()  # fail before loading the model when PyAV is missing
    engine = make_engine(args)
    if kind == "folder":
        return _upscale_folder(engine, args)
    if kind == "video":
        return _upscale_video(engine, args)
    dst = check_target(args.output or default_output(src, engine.scale), [src], args.overwrite)
    start = time.perf_counter()
    width, height = upscale_image_file(engine, src, dst, args.tile, args.quiet)
    print(f"wrote {dst} ({width}x{height}, x{engine.scale}, {engine.device}, {engine.precision}) "
          f"in {time.perf_counter() - start:.2f} s")
    return 0


def _upscale_folder(engine, args) -> int:
    src: Path = args.input
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CliError(f"no images ({' '.join(IMAGE_SUFFIXES)}) in {src}")
    out_dir: Path = args.output or default_output(src, engine.scale)
    if out_dir.exists() and out_dir.resolve() == src.resolve():
        raise CliError("the output folder is the input folder; choose another --output")
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--output {out_dir} is a file; a folder input needs an output folder")
    failed = 0
    start = time.perf_counter()
    for i, path in enumerate(files, 1):
        try:
            dst = check_target(out_dir / path.name, files, args.overwrite)
            t0 = time.perf_counter()
            width, height = upscale_image_file(engine, path, dst, args.tile, args.quiet)
            print(f"[{i}/{len(files)}] wrote {dst} ({width}x{height}) in {time.perf_counter() - t0:.2f} s")
        except CliError as exc:
            failed += 1
            print(f"[{i}/{len(files)}] error: {exc}", file=sys.stderr)
    print(f"{len(files) - failed} of {len(files)} images written to {out_dir} in {time.perf_counter() - start:.2f} s")
    return 1 if failed else 0


def _upscale_video(engine, args) -> int:
    from .video_io import VideoReader, VideoWriter

    src: Path = args.input
    dst = check_target(args.output or default_output(src, engine.scale, ".mp4"), [src], args.overwrite)
    options = {"temporal_strength": args.temporal_strength, "tile_size": args.tile}
    if args.scene_cut_sensitivity is not None:
        options["scene_cut_sensitivity"] = args.scene_cut_sensitivity
    reader = VideoReader(src)
    writer, state, done = None, None, 0
    progress = Progress(f"{src.name} frames", enabled=not args.quiet)
    start = time.perf_counter()
    try:
        for frames in reader.chunks(max(1, args.frames_per_chunk)):
            out, state = temporal.upscale_video(engine, frames, state=state, **options)
            if writer is None:
                writer = VideoWriter(dst, reader.rate, out.shape[2], out.shape[1])
            writer.write(out[..., :3])
            done += frames.shape[0]
            progress(done, max(done, reader.frames))
    finally:
        progress.close()
        reader.close()
        if writer is not None:
            writer.close()
    if writer is None:
        raise CliError(f"{src}: no frames could be decoded")
    print(f"wrote {dst} ({done} frames, x{engine.scale}) in {time.perf_counter() - start:.2f} s")
    return 0


def cmd_export_onnx(args) -> int:
    model = load_model(args.model, args.sharpness)
    dst = check_target(args.output, [args.model], args.overwrite)
    start = time.perf_counter()
    try:
        onnx_export.export_onnx(model, dst, precision=args.precision, video=args.temporal)
    except onnx_export.ExportError as exc:
        raise CliError(f"ONNX export failed: {exc}") from None
    except ImportError as exc:  # onnx / onnxscript missing
        raise CliError(f"ONNX export needs the onnx package ({exc}): pip install onnx onnxscript") from None
    kind = "video (temporal)" if args.temporal else "image"
    print(f"wrote {dst} ({model.variant} x{model.scale}, {args.precision}, {kind} graph) "
          f"in {time.perf_counter() - start:.2f} s")
    return 0


def cmd_build_trt(args) -> int:
    """Build the engine into the same cache the ComfyUI nodes use (or reuse it)."""
    reason = tensorrt_engine.unavailable_reason()
    if reason:  # before loading the model
        raise CliError(f"cannot build a TensorRT engine here: {reason}")
    model = load_model(args.model, args.sharpness)
    try:
        profile = Profile(min_side=args.min_tile, opt_side=args.opt_tile, max_side=args.max_tile)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    start = time.perf_counter()
    progress = Progress("TensorRT build")
    try:
        entry = tensorrt_engine.ensure_engine_bytes(
            model, precision=args.precision, profile=profile, video=args.temporal,
            models_dir=args.models_dir or default_models_dir(), progress=progress)
    except onnx_export.ExportError as exc:
        raise CliError(f"ONNX export failed: {exc}") from None
    except (tensorrt_build.BuildFailed, tensorrt_build.BuildCancelled, tensorrt_build.TensorRTUnavailable) as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    if not entry.built:
        print(f"TensorRT engine already built: {entry.path}")
    else:
        print(f"wrote TensorRT engine {entry.path} ({len(entry.data) / 1e6:.1f} MB) "
              f"in {time.perf_counter() - start:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "upscale")  # 'paragonsr2 photo.png' = 'paragonsr2 upscale photo.png'
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"upscale": cmd_upscale, "export-onnx": cmd_export_onnx, "build-trt": cmd_build_trt}[args.command]
    try:
        return handler(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: a one-line message and a failing exit code
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
