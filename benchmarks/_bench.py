"""Shared helpers of the benchmarks: import the pack, time, count FLOPs, measure memory.

Timing reports wall time and process CPU time. On a machine shared with other jobs the wall
time of many small kernels is dominated by preemption (an OpenMP barrier waits a scheduler
slice for a descheduled thread); CPU time is the robust figure there, wall time the one a
user sees on an idle machine. Both are medians of several runs after warm-up.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT))
from paragonsr2 import submodule  # noqa: E402  (the launcher imports the pack as ComfyUI does)


def optional_submodule(dotted: str):
    try:
        return submodule(dotted)
    except ImportError:
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device: torch.device, *, warmup: int = 1, repeats: int = 5) -> dict:
    """Median wall and process-CPU milliseconds of fn() (after warm-up)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {
        "wall_ms": 1e3 * statistics.median(walls),
        "cpu_ms": 1e3 * statistics.median(cpus),
        "wall_ms_min": 1e3 * min(walls),
        "runs": repeats,
    }


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> dict:
    """GFLOP/s of a large square GEMM (wall and per CPU-second), same threads as the model."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = timeit(lambda: a @ b, device, warmup=2, repeats=repeats)
    flops = 2 * n**3
    return {"n": n, "gflops_wall": flops / t["wall_ms"] / 1e6, "gflops_cpu": flops / max(t["cpu_ms"], 1e-9) / 1e6, **t}


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """QK^T and AV of scaled dot-product attention (the CPU flash kernel is not in torch's table)."""
    b, h, lq, d = query_shape
    lk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


def count_flops(model, x: torch.Tensor, reference: bool = True) -> dict:
    """FLOPs (2 per multiply-add) of the spec's network on x, by aten op, via FlopCounterMode.

    reference=True counts the straightforward path: the network's FLOPs, the figure GFLOP/s
    are quoted in. reference=False counts what the fast path executes (its HR head does
    fewer: one 5x5 conv at LR instead of up.0 + conv_out at HR).
    Convolutions (grouped ones correctly), matmuls and SDPA count;
    elementwise ops, norms and softmax do not (the usual convention).
    """
    from torch.utils.flop_counter import FlopCounterMode

    mode_mod = submodule("paragonsr2_arch.mode")
    mapping = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu",):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            mapping[op.default] = _sdpa_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    import contextlib

    switch = mode_mod.reference_mode() if reference else contextlib.nullcontext()
    with torch.no_grad(), switch, counter:
        model(x)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"total": int(counter.get_total_flops()), "by_op": by_op}


class PeakRSS:
    """Peak resident-set growth of this process while the block runs (sampled every 2 ms)."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak_delta = 0

    def __enter__(self):
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_delta = self._peak - self._base


def peak_memory(fn, device: torch.device) -> int:
    """Bytes: RSS growth on CPU, max_memory_allocated growth on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    import gc

    gc.collect()
    with PeakRSS() as probe:
        fn()
    return probe.peak_delta


# -- where the time goes ----------------------------------------------------------------------

_CATEGORIES = (
    ("attention (SDPA, softmax)", ("scaled_dot_product", "softmax")),
    (
        "copies / layout (gather, cat, roll, pixel_shuffle)",
        ("copy", "index_select", "cat", "roll", "pixel_shuffle", "clone", "contiguous"),
    ),
    ("GEMM (addmm, mm, bmm)", ("addmm", "mm", "bmm", "linear")),
    ("norms / reductions", ("norm", "mean", "sum", "rsqrt", "pow")),
)


def _category(op_name: str, args) -> str:
    if "conv" in op_name and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].dim() == 4:
        x, weight = args[0], args[1]
        if weight.shape[1] == 1 and x.shape[1] > 1:
            return "depthwise conv"
        if weight.shape[-1] == 1 and weight.shape[-2] == 1:
            return "1x1 conv (GEMM)"
        return "dense 3x3/5x5/7x7 conv"
    for label, keys in _CATEGORIES:
        if any(k in op_name for k in keys):
            return label
    return "elementwise (gelu, mul, add, clamp)"


def op_time_shares(fn) -> dict:
    """Share of thread-CPU time per op category for fn() run with ONE thread.

    Per-op wall time is meaningless on a loaded machine (preemption lands on whichever op
    runs); single-thread CPU time of each aten op is not.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    totals: dict[str, float] = defaultdict(float)

    class Timer(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            t0 = time.thread_time()
            out = func(*args, **(kwargs or {}))
            totals[_category(func.__name__, args)] += time.thread_time() - t0
            return out

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()  # warm-up (weight caches, oneDNN primitives)
        with Timer():
            fn()
    finally:
        torch.set_num_threads(threads)
    total = sum(totals.values()) or 1.0
    return {k: v / total for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
