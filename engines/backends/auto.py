"""``auto``: the fastest backend for a model on a device, in the precision the user chose.

The rule (docs/architecture.md, "Choosing the backend"):

* an NVIDIA GPU inside ComfyUI (``managed_gpu``): torch, whose weights ComfyUI's model manager
  moves and frees; elsewhere on CUDA: TensorRT when it is installed (an engine built once and
  cached, fp32/fp16) and the precision is not bf16, else torch; Apple MPS: torch;
* an OpenVINO device name (``GPU``, ``NPU``, ``AUTO``): OpenVINO, the only backend for them;
* the CPU: a probe. torch and OpenVINO (ONNX Runtime where OpenVINO is absent; only those
  installed that run the chosen precision natively) each run a small tile of this model a few
  times, interleaved, and the fastest minimum wins, torch keeping its place unless another is
  at least ``MARGIN`` faster (torch's cancel points are finer). The result is cached on disk per CPU
  model, thread count, variant, scale, model size, precision and library versions, so the probe
  runs once per machine and model kind (seconds; photo/pro export their ONNX graph first:
  up to a minute or two on a busy 2-core machine).

No backend ever gets a precision the user did not choose: "auto" precision is what each
backend calls auto (fp32 on the CPU, never OpenVINO's native bf16).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..runtime.devices import dtype_name, pick_device, resolve_dtype
from ..runtime.files import atomic_write_bytes
from .registry import make_engine

if TYPE_CHECKING:
    from ...paragonsr2_arch import ParagonSR2
    from ..runtime.contract import Engine

logger = logging.getLogger("ParagonSR2")

PROBE_FORMAT = 3  # bump when the probe's meaning changes: old results are then ignored
CACHE_SUBDIR = ("paragonsr2_auto",)
# The nodes' CPU default: "auto" (the probe), or a backend name to use without probing.
CPU_BACKEND_ENV = "PARAGONSR2_CPU_BACKEND"
# The nodes' CPU default probes only these variants: their ONNX export takes seconds, and OpenVINO
# fp32 beat torch on them (docs/benchmarks.md). photo/pro export for a minute or more on a small
# CPU with no progress or cancel, and measured slower on OpenVINO fp32: the nodes keep torch
# for them unless the user picks a backend (Engine node, --backend).
NODE_PROBED_VARIANTS = ("realtime", "stream")
MARGIN = 1.1  # another backend must be this much faster than torch to be chosen
PROBE_TILE = {"realtime": 128, "stream": 128, "photo": 96, "pro": 64}  # LR px; multiples of 16
PROBE_RUNS = 3  # timed runs per candidate (after one warm-up), interleaved; the minimum counts
# Pause before each timed run: ONNX Runtime's workers spin after a run (its default) and would
# steal the cores of the next candidate (torch right after it: 28 vs 14 ms on 2 cores).
PROBE_GAP_S = 0.1


@dataclass(frozen=True)
class Choice:
    """What ``auto`` picked: a backend and a device for registry.make_engine, and why."""

    backend: str
    device: str
    reason: str
    timings_ms: dict = field(default_factory=dict)  # candidate -> best probe ms (CPU probes)
    cached: bool = False  # the probe result came from the disk cache

    def describe(self) -> str:
        return f"{self.backend} on {self.device}: {self.reason}"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cpu_name() -> str:
    """The CPU model ("AMD EPYC 7763 64-Core Processor"), as precise as the OS tells."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module: str) -> str | None:
    if not installed(module):
        return None
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # broken install: counts as absent for the probe
        return None


def probe_facts(model: ParagonSR2, precision: str, video: bool) -> dict:
    """Everything a CPU probe's result depends on (its cache key)."""
    return {
        "format": PROBE_FORMAT,
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "variant": str(model.variant),
        "scale": int(model.scale),
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": precision,
        "video": bool(video),
        "torch": torch.__version__,
        "openvino": _version("openvino"),
        "onnxruntime": _version("onnxruntime"),
    }


def cache_folder(models_dir: str | Path | None) -> Path:
    from .engine_cache import default_models_dir

    return Path(models_dir or default_models_dir()).joinpath(*CACHE_SUBDIR)


def _cache_path(folder: Path, facts: dict) -> Path:
    import hashlib

    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]
    return folder / f"probe_{facts['variant']}_x{facts['scale']}_{facts['precision']}_{key}.json"


def cpu_candidates(precision: str) -> list[str]:
    """Backends that can run ``precision`` on this CPU (installed, natively)."""
    names = ["torch"]
    if installed("openvino"):
        try:
            from .openvino_engine import check_precision

            check_precision("CPU", precision)
            names.append("openvino")
        except Exception as exc:  # no native bf16/fp16 here, or a broken install
            logger.info("ParagonSR2 auto: OpenVINO left out of the probe (%s)", exc)
    # ONNX Runtime's CPU provider runs fp32 only, and where OpenVINO is installed it is not
    # probed: on the same graphs it was slower than OpenVINO on every variant (issue 19: 1.06 /
    # 1.13 / 0.62x torch against 1.49 / 1.41 / 0.86x), and each probed graph backend costs an
    # ONNX export on first use (tens of seconds for photo/pro on 2 cores).
    if "openvino" not in names and installed("onnxruntime") and installed("onnx") and precision == "fp32":
        names.append("onnxruntime")
    return names


def _engine(backend: str, model: ParagonSR2, device: str, precision: str, video: bool, models_dir) -> Engine:
    options = {"models_dir": models_dir} if backend in ("openvino", "tensorrt") else {}
    return make_engine(backend, model, device, precision, video=video, **options)


def probe_cpu(
    model: ParagonSR2, precision: str, video: bool, models_dir=None, runs: int = PROBE_RUNS
) -> tuple[dict[str, float], dict[str, Engine], dict[str, str]]:
    """(best ms per candidate, the engines built, why a candidate failed). Runs are
    interleaved so a burst of load on a shared machine hits every candidate alike."""
    side = PROBE_TILE.get(str(model.variant), 64)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    engines, failed = {}, {}
    for name in cpu_candidates(precision):
        try:
            engine = _engine(name, model, "cpu", precision, video, models_dir)
            engine(x)  # warm-up: weight caches, kernels, memory pools
            engines[name] = engine
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            logger.warning("ParagonSR2 auto: %s could not run (%s); left out", name, exc)
    best = {name: float("inf") for name in engines}
    for _ in range(runs):
        for name, engine in engines.items():
            time.sleep(PROBE_GAP_S)
            start = time.perf_counter()
            engine(x)
            best[name] = min(best[name], 1e3 * (time.perf_counter() - start))
    return best, engines, failed


def _pick(timings: dict[str, float]) -> str:
    torch_ms = timings.get("torch", float("inf"))
    others = {k: v for k, v in timings.items() if k != "torch"}
    if not others:
        return "torch"
    fastest = min(others, key=lambda k: others[k])
    return fastest if others[fastest] * MARGIN < torch_ms else "torch"


def _reason(chosen: str, timings: dict[str, float], side: int, cached: bool) -> str:
    figures = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(timings.items(), key=lambda kv: kv[1]))
    source = "cached probe" if cached else "probe"
    return f"fastest on this CPU ({source}, {side} px tile: {figures}; others need {MARGIN:g}x torch's speed)"


def cpu_precision(precision: str | None) -> str:
    """A precision choice as the CPU runs it: "auto" = fp32 (resolve_dtype's rule on the CPU)."""
    return dtype_name(resolve_dtype(precision, "cpu"))


def choose(
    model: ParagonSR2,
    device: str | torch.device = "auto",
    precision: str = "auto",
    *,
    video: bool = False,
    models_dir: str | Path | None = None,
    managed_gpu: bool = False,
) -> tuple[Choice, Engine | None]:
    """(the choice, an engine the probe already built for it or None)."""
    name = str(device or "auto").strip()
    if name.split(".", 1)[0].upper() in ("GPU", "NPU") or name == "AUTO":  # OpenVINO's names ("auto": ours)
        return Choice("openvino", name.upper(), "only OpenVINO runs on this device"), None
    target = pick_device(name)
    p = (precision or "auto").strip().lower()
    if target.type == "cuda":
        if managed_gpu:
            return Choice("torch", str(target), "a GPU that ComfyUI manages: torch keeps its model management"), None
        if installed("tensorrt") and p != "bf16":
            why = "TensorRT is the fastest runtime on NVIDIA GPUs (built once, cached)"
            return Choice("tensorrt", str(target), why), None
        why = "TensorRT has no bf16 graphs" if p == "bf16" else "TensorRT is not installed"
        return Choice("torch", str(target), f"{why}; torch on CUDA"), None
    if target.type != "cpu":
        return Choice("torch", str(target), f"only torch runs on {target.type}"), None
    return choose_cpu(model, cpu_precision(precision), video=video, models_dir=models_dir)


def choose_cpu(
    model: ParagonSR2, precision: str, *, video: bool = False, models_dir: str | Path | None = None
) -> tuple[Choice, Engine | None]:
    """The CPU choice from the cached probe, else from a fresh probe (whose result is cached)."""
    side = PROBE_TILE.get(str(model.variant), 64)
    candidates = cpu_candidates(precision)
    if candidates == ["torch"]:
        return Choice("torch", "cpu", "the only backend installed that runs this precision natively"), None
    facts = probe_facts(model, precision, video)
    path = _cache_path(cache_folder(models_dir), facts)
    try:
        saved = json.loads(path.read_text())
        if saved.get("facts") == facts and saved.get("backend") in candidates:
            timings = saved["timings_ms"]
            return Choice(saved["backend"], "cpu", _reason(saved["backend"], timings, side, True), timings, True), None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    timings, engines, failed = probe_cpu(model, precision, video, models_dir)
    chosen = _pick(timings)
    choice = Choice(chosen, "cpu", _reason(chosen, timings, side, False), timings)
    record = {"facts": facts, "backend": chosen, "timings_ms": timings, "failed": failed, **_stamp()}
    try:
        atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    except OSError as exc:  # a read-only models folder: the choice still stands for this run
        logger.warning("ParagonSR2 auto: could not cache the probe in %s (%s)", path.parent, exc)
    return choice, engines.get(chosen)


def _stamp() -> dict:
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_average": _load()}


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def create(
    model: ParagonSR2,
    device: str | torch.device = "auto",
    precision: str = "auto",
    *,
    video: bool = False,
    models_dir: str | Path | None = None,
    managed_gpu: bool = False,
    **options,
) -> tuple[Engine, Choice]:
    """(engine, choice): the chosen backend's engine, made once (the probe's own when it ran)."""
    choice, engine = choose(model, device, precision, video=video, models_dir=models_dir, managed_gpu=managed_gpu)
    logger.info("ParagonSR2 auto: %s %s x%s -> %s", model.variant, precision, model.scale, choice.describe())
    if engine is None:
        engine = engine_of(choice, model, precision, video=video, models_dir=models_dir, **options)
    return engine, choice


def engine_of(
    choice: Choice, model: ParagonSR2, precision: str, *, video: bool, models_dir: str | Path | None, **options
) -> Engine:
    """The engine a choice names (backends that cache on disk get ``models_dir``)."""
    if choice.backend in ("openvino", "tensorrt"):
        options["models_dir"] = models_dir
    return make_engine(choice.backend, model, choice.device, precision, video=video, **options)


def faster_cpu_engine(
    model: ParagonSR2, precision: str = "auto", *, video: bool = True, models_dir: str | Path | None = None
) -> Engine | None:
    """For the ComfyUI nodes' default on the CPU: the probe's engine when it beats torch, else
    None (the node keeps its torch engine). ``$PARAGONSR2_CPU_BACKEND`` = torch / openvino /
    onnxruntime overrides the probe. Never raises for a backend's failure: torch is the
    fallback, and the reason is logged."""
    forced = os.environ.get(CPU_BACKEND_ENV, "auto").strip().lower() or "auto"
    if forced == "auto" and model.variant not in NODE_PROBED_VARIANTS:
        return None
    try:
        if forced != "auto":
            if forced not in ("torch", "openvino", "onnxruntime"):
                raise ValueError(f"{CPU_BACKEND_ENV}={forced!r}; use auto, torch, openvino or onnxruntime")
            choice, engine = Choice(forced, "cpu", f"set by {CPU_BACKEND_ENV}"), None
        else:
            choice, engine = choose_cpu(model, cpu_precision(precision), video=video, models_dir=models_dir)
        if choice.backend == "torch":
            return None
        logger.info("ParagonSR2: %s x%s on the CPU runs on %s", model.variant, model.scale, choice.describe())
        if engine is None:
            engine = engine_of(choice, model, precision, video=video, models_dir=models_dir)
        return engine
    except Exception as exc:
        logger.warning("ParagonSR2: choosing a faster CPU engine failed (%s); using torch", exc)
        return None


def create_engine(
    model: ParagonSR2,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    video: bool = False,
    models_dir: str | Path | None = None,
    **options,
) -> Engine:
    """The registry's entry for ``auto``: ``create(...)``'s engine (its choice is logged)."""
    return create(model, device, precision, video=video, models_dir=models_dir, **options)[0]
