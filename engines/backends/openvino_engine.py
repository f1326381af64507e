"""Run a ParagonSR2 network with OpenVINO (Intel's runtime: CPUs of any make, Intel GPUs and NPUs).

The graph is the pack's own ONNX export (onnx_export.py, always float32: OpenVINO runs it in
the precision pinned by ``INFERENCE_PRECISION_HINT``, because its own default is bf16 on CPUs
with native bf16 and f16 on GPUs, which would change the output without being asked). The
converted model is cached on disk as OpenVINO IR (``.xml`` + ``.bin``, written atomically) under
``<models>/openvino/paragonsr2/``, keyed by what the graph depends on (weights digest, the
source of the exporter and the network, torch and OpenVINO versions, variant, scale, video), so
a cache hit reads the IR and compiles it (tens of ms on a CPU) without exporting ONNX. The IR
does not depend on the device or the precision (those are compile settings); compiled GPU/NPU
kernels, which take seconds to build, go to OpenVINO's own ``CACHE_DIR`` beside it.

Threads: one stream, ``INFERENCE_NUM_THREADS`` = torch's thread count (the pack and ComfyUI set
that for the machine), CPU pinning off. torch idles while a graph runs (it only pads and
crops), so the two never compete; video decoding threads are PyAV's own, as with torch.

Cancel and progress: a call runs asynchronously and is polled every 50 ms; the runners' hook
(``on_step``) is called at each poll with an estimate of how far the call is (from the last
calls' time per pixel), so cancel acts within ~50 ms plus OpenVINO's cancel, not after a tile.

Video: as the ONNX Runtime engine: ``decode(lr, feat)`` runs the video graph with
``prev_feat = feat`` and ``temporal_alpha = 1``; ``encode`` is a torch copy of conv_in.

Intel GPUs and NPUs could not be tested where this was written (no such device); the CPU
plugin is tested on real weights (tests/test_openvino_engine.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ... import paragonsr2_arch
from ..runtime.contract import ALIGN, ALLOCATOR_ARENA, EngineInfo, InfoAttributes, frozen_copy
from ..runtime.devices import dtype_name, resolve_dtype
from ..runtime.files import atomic_write_bytes
from . import onnx_export
from .onnx_export import ALPHA, INPUT, PREV_FEAT, export_onnx, pad_to_multiple, weights_digest

if TYPE_CHECKING:
    from openvino import Model

    from ...paragonsr2_arch import ParagonSR2

logger = logging.getLogger("ParagonSR2")

CACHE_SUBDIR = ("openvino", "paragonsr2")
IR_FORMAT = 1  # bump when the cached IR's meaning changes
POLL_S = 0.05  # how often a running call checks for cancel and reports progress
PROGRESS_STEPS = 16  # stages one call reports (an estimate from elapsed time; see _wait)
# Precision names of the pack -> OpenVINO element types for INFERENCE_PRECISION_HINT, and the
# OPTIMIZATION_CAPABILITIES entry a device lists when it runs that type natively.
HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
CAPABILITY = {"fp32": "FP32", "fp16": "FP16", "bf16": "BF16"}
INSTALL_HINT = "pip install openvino onnx (or the pack's extra: pip install .[openvino])"


class OpenVinoUnavailable(RuntimeError):
    """OpenVINO (or onnx, for the first export) is not installed."""


def require_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise OpenVinoUnavailable(f"the OpenVINO engine needs the 'openvino' package: {INSTALL_HINT}") from exc
    return openvino


def openvino_version() -> str | None:
    """The installed OpenVINO version, or None when it is not importable."""
    try:
        return str(require_openvino().__version__)
    except OpenVinoUnavailable:
        return None


_CORE = None
_CORE_LOCK = threading.Lock()


def core():
    """One ``openvino.Core`` per process (it loads the device plugins once)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = require_openvino().Core()
        return _CORE


def available_devices() -> list[str]:
    """OpenVINO's device names on this machine (``CPU``, ``GPU.0``, ``NPU``, ...); [] without it."""
    try:
        return list(core().available_devices)
    except OpenVinoUnavailable:
        return []


def device_choices() -> list[str]:
    """What a user may pick: ``AUTO`` (OpenVINO's own choice) when more than one device exists,
    then each device, plus ``GPU`` as the short name of the first GPU."""
    devices = available_devices()
    names = list(devices)
    if any(d.startswith("GPU.") for d in devices) and "GPU" not in names:
        names.insert(1 if "CPU" in names else 0, "GPU")
    return (["AUTO"] if len(devices) > 1 else []) + names


def openvino_device(device: str | torch.device | None) -> str:
    """The OpenVINO device for a pack device choice: ``auto`` / ``cpu`` -> CPU (the pack's
    ``auto`` means the CPU wherever OpenVINO is offered), OpenVINO names (``GPU``, ``GPU.1``,
    ``NPU``, ``AUTO``, any case) as they are. CUDA devices are refused: OpenVINO does not
    run on NVIDIA GPUs."""
    choice = str(device if device is not None else "auto").strip()
    low = choice.lower()
    if low in ("auto", "cpu", ""):
        return "CPU"
    if low.startswith(("cuda", "mps")):
        raise ValueError(f"OpenVINO does not run on {choice!r}; use cpu, GPU or NPU (Intel), or the torch backend")
    name = choice.upper()
    known = available_devices()
    base = name.split(".", 1)[0]
    if name != "AUTO" and name not in known and not any(d.split(".", 1)[0] == base for d in known):
        raise RuntimeError(f"OpenVINO sees no {name} device here (it reports: {', '.join(known) or 'none'})")
    return name


def graph_source_digest() -> str:
    """What the exported graph depends on besides the weights: the source of the exporter and of
    the network package, and the torch version that traces it. Any change to
    them invalidates cached IR, so no hand-kept exporter version can go stale."""
    h = hashlib.sha256()
    files = [Path(onnx_export.__file__), *sorted(Path(paragonsr2_arch.__file__).parent.glob("*.py"))]
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(f"torch {torch.__version__}".encode())
    return h.hexdigest()[:24]


def ir_facts(model: ParagonSR2, video: bool) -> dict:
    """Everything the cached IR depends on; equal facts = the same IR."""
    return {
        "format": IR_FORMAT,
        "weights": weights_digest(model),
        "graph_source": graph_source_digest(),
        "openvino": openvino_version(),
        "variant": str(model.variant),
        "scale": int(model.scale),
        "video": bool(video),
    }


def cache_folder(models_dir: str | Path | None) -> Path:
    from .engine_cache import default_models_dir

    return Path(models_dir or default_models_dir()).joinpath(*CACHE_SUBDIR)


def _ir_paths(folder: Path, facts: dict) -> tuple[Path, Path]:
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]
    stem = f"{facts['variant']}_x{facts['scale']}_{'video' if facts['video'] else 'image'}_{key}"
    return folder / f"{stem}.xml", folder / f"{stem}.bin"


def load_or_convert(model: ParagonSR2, video: bool, models_dir: str | Path | None = None) -> tuple[Model, bool]:
    """(OpenVINO model, came from the cache). On a miss the model is exported to ONNX, converted,
    and saved as IR (weights first, the .xml last, each atomically: a reader that finds the
    .xml finds its complete .bin)."""
    ov = require_openvino()
    folder = cache_folder(models_dir)
    xml, weights = _ir_paths(folder, ir_facts(model, video))
    if xml.is_file() and weights.is_file():
        try:
            return core().read_model(str(xml)), True
        except Exception as exc:  # a damaged file: convert again and overwrite it
            logger.warning("ParagonSR2: cached OpenVINO model %s is unreadable (%s); converting again", xml.name, exc)
    try:
        data = export_onnx(model, precision="fp32", video=video)
    except onnx_export.ExportError as exc:
        raise OpenVinoUnavailable(f"{exc} (the OpenVINO engine converts the pack's ONNX export)") from None
    converted = core().read_model(data)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".convert-") as scratch:
        tmp_xml = Path(scratch) / "model.xml"
        # compress_to_fp16=False: the default would store float16 weights, i.e. change the model
        ov.save_model(converted, str(tmp_xml), compress_to_fp16=False)
        atomic_write_bytes(weights, tmp_xml.with_suffix(".bin").read_bytes())
        atomic_write_bytes(xml, tmp_xml.read_bytes())
    return converted, False


def compile_config(device: str, precision: str, models_dir: str | Path | None, threads: int | None = None) -> dict:
    """Compile settings: the precision always pinned; on CPUs one stream of torch's thread count,
    no pinning; other devices cache their compiled kernels. Only settings the device lists as
    supported are passed (AUTO forwards the precision to the device it picks)."""
    config: dict = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        config.update(
            {
                "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                "NUM_STREAMS": 1,
                "ENABLE_CPU_PINNING": False,
            }
        )
    else:
        config["CACHE_DIR"] = str(cache_folder(models_dir) / "compiled")
    try:
        supported = set(core().get_property(device, "SUPPORTED_PROPERTIES"))
    except Exception:  # AUTO and some plugins answer only for concrete devices
        return config
    return {k: v for k, v in config.items() if k in supported or k == "CACHE_DIR"}


def check_precision(device: str, precision: str) -> None:
    """Refuse a precision the device does not run natively (OpenVINO would silently use another)."""
    if device.startswith(("AUTO", "MULTI", "HETERO")):
        return
    try:
        capabilities = set(core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return
    if CAPABILITY[precision] not in capabilities:
        offered = [p for p, cap in CAPABILITY.items() if cap in capabilities]
        raise ValueError(
            f"OpenVINO's {device} has no native {precision}; it offers {', '.join(offered) or 'none of fp32/fp16/bf16'}"
        )


class OpenVinoEngine(InfoAttributes):
    """``OpenVinoEngine(model, device="CPU", precision="fp32", video=False, models_dir=None)``.

    Attributes besides ``info``: ``ov_device`` (OpenVINO's name), ``from_cache`` (the IR was read
    from disk, no ONNX export ran), ``compiled``.
    """

    def __init__(
        self,
        model: ParagonSR2,
        device: str = "CPU",
        precision: str = "fp32",
        *,
        video: bool = False,
        models_dir: str | Path | None = None,
        threads: int | None = None,
    ):
        if precision not in HINTS:
            raise ValueError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
        self.ov_device = device
        check_precision(device, precision)
        ov_model, self.from_cache = load_or_convert(model, video, models_dir)
        self.compiled = core().compile_model(ov_model, device, compile_config(device, precision, models_dir, threads))
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one request: calls from several threads take turns
        self._seconds_per_pixel = 0.0  # of the last calls, for the progress estimate
        self._zeros: np.ndarray | None = None
        windowed = int(model.window_size) > 1
        self.align = ALIGN if windowed else 1
        self.num_feat = int(model.num_feat)
        self.info = EngineInfo.of_model(
            model,
            torch.device("cpu"),  # inputs and outputs live on the CPU whatever device computes
            resolve_dtype(precision, "cpu"),
            tile_multiple=ALIGN if windowed else None,
            allocator=ALLOCATOR_ARENA,  # OpenVINO reuses its own buffers: large tiles are fine
            supports_video=bool(video),
            steps_per_call=PROGRESS_STEPS,
        )
        self.conv_in = frozen_copy(model.conv_in, dtype=torch.float32) if video else None

    # -- running the graph ---------------------------------------------------------------------
    def _prepare(self, t: torch.Tensor) -> tuple[np.ndarray, int, int]:
        t = t.detach().to("cpu", torch.float32)
        h, w = t.shape[-2:]
        if self.align > 1:
            t = pad_to_multiple(t, self.align)
        return np.ascontiguousarray(t.numpy()), h, w

    def _run(self, inputs: dict, pixels: int, on_step) -> np.ndarray:
        """Run one request; returns a copy of its first output (the request reuses its memory)."""
        with self._lock:
            start = time.perf_counter()
            if on_step is None:
                self._request.infer(inputs)
            else:
                self._request.start_async(inputs)
                self._wait(start, pixels, on_step)
            self._seconds_per_pixel = (time.perf_counter() - start) / max(pixels, 1)
            return np.array(self._request.get_output_tensor(0).data, copy=True)

    def _wait(self, start: float, pixels: int, on_step) -> None:
        """Poll the running request; ``on_step`` (cancel point, progress) at each poll. If it
        raises, the request is cancelled and waited for before the exception goes on."""
        expected = self._seconds_per_pixel * pixels
        try:
            while not self._request.wait_for(int(POLL_S * 1000)):
                done = int(PROGRESS_STEPS * (time.perf_counter() - start) / expected) if expected else 0
                on_step(min(max(done, 1), PROGRESS_STEPS - 1), PROGRESS_STEPS)
        except BaseException:
            self._request.cancel()
            try:
                self._request.wait()
            except Exception:  # a cancelled request reports its cancellation here
                pass
            raise

    def _zero_feat(self, shape: tuple) -> np.ndarray:
        """prev_feat for image calls on a video graph: kept between calls of the same shape
        (tiles repeat their shape), so it is not allocated and zeroed every time."""
        if self._zeros is None or self._zeros.shape != shape:
            self._zeros = np.zeros(shape, np.float32)
        return self._zeros

    def _crop(self, out: np.ndarray, h: int, w: int, factor: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(out[:, :, : h * factor, : w * factor]))

    def _video_inputs(self, x: np.ndarray, feat: np.ndarray, alpha: float) -> dict:
        return {INPUT: x, PREV_FEAT: feat, ALPHA: np.asarray(alpha, np.float32)}

    def __call__(self, lr: torch.Tensor, on_step=None) -> torch.Tensor:
        x, h, w = self._prepare(lr)
        b, _, hp, wp = x.shape
        inputs = {INPUT: x}
        if self.video:  # the video graph with temporal_alpha = 0 is exactly the image graph
            inputs = self._video_inputs(x, self._zero_feat((b, self.num_feat, hp, wp)), 0.0)
        return self._crop(self._run(inputs, b * hp * wp, on_step), h, w, self.scale)

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        self._need_video("encode")
        assert self.conv_in is not None
        with torch.inference_mode():
            return self.conv_in(lr.detach().to("cpu", torch.float32)).float()

    def decode(self, lr: torch.Tensor, feat: torch.Tensor, on_step=None) -> torch.Tensor:
        self._need_video("decode")
        x, h, w = self._prepare(lr)
        f, _, _ = self._prepare(feat)
        b, _, hp, wp = x.shape
        return self._crop(self._run(self._video_inputs(x, f, 1.0), b * hp * wp, on_step), h, w, self.scale)

    def _need_video(self, what: str) -> None:
        if not self.video:
            raise RuntimeError(f"{what} needs a video graph: create the engine with video=True")

    def __repr__(self) -> str:
        kind = "video" if self.video else "image"
        return f"OpenVinoEngine({self.variant} x{self.scale}, {self.ov_device}, {self.precision}, {kind})"


def create_engine(
    model: ParagonSR2,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    video: bool = False,
    models_dir: str | Path | None = None,
    threads: int | None = None,
) -> OpenVinoEngine:
    """The registry's entry (registry.make_engine). ``precision`` "auto" = fp32 on every device
    (never OpenVINO's own bf16/f16 default); fp16 / bf16 only when asked and native."""
    require_openvino()
    ov_device = openvino_device(device)
    p = (precision or "auto").strip().lower()
    chosen = "fp32" if p == "auto" else dtype_name(resolve_dtype(p, "cpu"))
    return OpenVinoEngine(model, ov_device, chosen, video=video, models_dir=models_dir, threads=threads)
