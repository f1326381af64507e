"""Build a TensorRT engine from an exported ParagonSR2 graph (TensorRT 10.x and 11.x alike).

One code path for both versions: a strongly typed network (TensorRT 11 has no other kind and
removed the FP16/BF16 builder flags), so the precision comes from the typed ONNX graph; one
optimisation profile; a workspace limit; a persisted timing cache; a progress monitor that
reports to a callback and can cancel; a logger that keeps the warnings and errors so a failed
build explains itself. Only documented calls of the Python API are used (see
docs/tensorrt.md, "The TensorRT API this pack relies on").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ..runtime.files import atomic_write_bytes
from .engine_cache import Profile
from .onnx_export import ALPHA, INPUT, PREV_FEAT

logger = logging.getLogger("ParagonSR2")

INSTALL_HINT = (
    "TensorRT engines need an NVIDIA GPU with a current driver, a CUDA build of "
    "PyTorch, and the TensorRT Python package: pip install tensorrt"
)


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing; the message says which and how to install."""


class BuildCancelled(RuntimeError):
    """The user cancelled the build."""


class BuildFailed(RuntimeError):
    """TensorRT could not build the engine; the message carries TensorRT's own log lines."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"the tensorrt package is not installed. {INSTALL_HINT}") from exc
    return trt


def unavailable_reason() -> str | None:
    """None when TensorRT can build here, else what is missing (and how to fix it).

    Importing is not enough: without a usable NVIDIA driver ``import tensorrt`` works and
    creating a Builder fails, so a Builder is created.
    """
    try:
        import torch

        if not torch.cuda.is_available():
            return f"no CUDA GPU is visible to PyTorch (CPU-only build or no NVIDIA driver). {INSTALL_HINT}"
        trt = import_tensorrt()
        builder = trt.Builder(make_logger(trt))
        if builder is None:
            return f"TensorRT could not start (CUDA driver too old?). {INSTALL_HINT}"
        del builder
    except TensorRTUnavailable as exc:
        return str(exc)
    except Exception as exc:  # pybind "factory function returned nullptr", driver errors
        return f"TensorRT could not start: {exc}. {INSTALL_HINT}"
    return None


def make_logger(trt, echo: bool = True):
    """A trt.ILogger that records warnings and errors (for error messages) and forwards them
    to Python logging."""

    class RecordingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []
            self._lock = threading.Lock()

        def log(self, severity, msg):
            if int(severity) > int(trt.ILogger.Severity.WARNING):
                return
            name = "ERROR" if int(severity) <= int(trt.ILogger.Severity.ERROR) else "WARNING"
            with self._lock:
                self.lines.append(f"[TensorRT {name}] {msg}")
            if echo:
                logger.warning("TensorRT %s: %s", name.lower(), msg)

        def explain(self, limit: int = 20) -> str:
            with self._lock:
                return "\n".join(self.lines[-limit:]) or "(TensorRT logged no warnings or errors)"

    return RecordingLogger()


def make_progress_monitor(trt, progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None):
    """A trt.IProgressMonitor that reports the top-level phase's steps as (done, total) and
    asks ``cancel()`` after every step (True cancels the build)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.cancelled = False
            self._top = None
            self._lock = threading.Lock()  # TensorRT may call from several threads

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                if parent_phase is None and self._top is None:
                    self._top = (phase_name, max(1, int(num_steps)))

        def step_complete(self, phase_name, step):
            with self._lock:
                top = self._top
            if progress is not None and top is not None and phase_name == top[0]:
                try:
                    progress(int(step) + 1, top[1])
                except Exception:  # a progress bar must never kill a build
                    logger.debug("progress callback failed", exc_info=True)
            if cancel is not None:
                try:
                    if cancel():
                        self.cancelled = True
                except Exception:
                    self.cancelled = True
            return not self.cancelled

        def phase_finish(self, phase_name):
            with self._lock:
                if self._top is not None and phase_name == self._top[0]:
                    self._top = None

    return Monitor()


def strongly_typed_flag(trt) -> int:
    # The enum's value differs between 10.x and 11.x: never hard-code the bit.
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def build_serialized_engine(
    onnx_bytes: bytes,
    profile: Profile,
    *,
    num_feat: int,
    video: bool,
    workspace_bytes: int = 4 << 30,
    timing_cache: Path | None = None,
    optimization_level: int = 3,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> bytes:
    """Parse, configure and build; returns the serialized engine.

    Raises TensorRTUnavailable, BuildCancelled, or BuildFailed (with TensorRT's log lines).
    """
    trt = import_tensorrt()
    trt_logger = make_logger(trt)
    builder = trt.Builder(trt_logger)
    if builder is None:
        raise TensorRTUnavailable(f"TensorRT could not create a builder. {INSTALL_HINT}")
    network = builder.create_network(strongly_typed_flag(trt))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildFailed("TensorRT could not parse the ONNX graph:\n" + "\n".join(errors + [trt_logger.explain()]))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    config.builder_optimization_level = int(optimization_level)
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT, *profile.shapes(3))
    if video:
        trt_profile.set_shape(PREV_FEAT, *profile.shapes(int(num_feat)))
        # temporal_alpha is a 0-d tensor: its shape is static, it needs no profile entry.
    config.add_optimization_profile(trt_profile)

    saved = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        saved = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(saved)
    if not config.set_timing_cache(cache, ignore_mismatch=False) and saved:
        logger.warning(
            "ParagonSR2: TensorRT timing cache %s does not fit this GPU/version; starting fresh", timing_cache
        )
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    monitor = None
    if hasattr(trt, "IProgressMonitor"):  # all 10.x/11.x bindings; kept optional for safety
        monitor = make_progress_monitor(trt, progress, cancel)
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if monitor is not None and monitor.cancelled:
        raise BuildCancelled("TensorRT engine build cancelled")
    if serialized is None:
        raise BuildFailed("TensorRT could not build the engine:\n" + trt_logger.explain())

    if timing_cache is not None:
        try:
            atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
        except OSError as exc:  # a timing cache only speeds up the next build
            logger.warning("ParagonSR2: could not save the TensorRT timing cache: %s", exc)
    return bytes(serialized)


def gpu_facts(device_index: int | None = None) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of the CUDA device that will run engines."""
    import torch

    index = torch.cuda.current_device() if device_index is None else device_index
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


__all__ = [
    "ALPHA",
    "INSTALL_HINT",
    "BuildCancelled",
    "BuildFailed",
    "TensorRTUnavailable",
    "build_serialized_engine",
    "gpu_facts",
    "import_tensorrt",
    "make_logger",
    "make_progress_monitor",
    "strongly_typed_flag",
    "unavailable_reason",
]
