"""Speed of every ParagonSR2 variant on this machine: `python benchmarks/speed.py [--quick] [--json out.json]`.

Per variant x scale x (device, precision): output megapixels/s and ms per LR tile of the
optimised path and of the straightforward eager implementation of the spec (same process,
same threads, ratios), network GFLOP/s against the machine's own large-GEMM rate (roofline
fraction), peak memory, where the time goes (single-thread op shares), tiled overhead and
video frames/s when the tiling/temporal runners are present. A table is printed last.
Tile sides are LR pixels; on CPU the default tile is smaller than 512 for the heavy
variants (pro at 512x512 takes minutes on 2 cores) and the ms per 512x512 tile is scaled
from it (the work is linear in pixels); the JSON records which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench

VARIANTS = ("realtime", "stream", "photo", "pro")
CPU_TILES = {"realtime": 256, "stream": 256, "photo": 128, "pro": 96}
QUICK_TILE = 48


def _devices(choice: str) -> list[tuple[torch.device, torch.dtype]]:
    runs = []
    if choice in ("auto", "cpu"):
        runs.append((torch.device("cpu"), torch.float32))
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        dev = torch.device("cuda")
        runs += [(dev, torch.float32), (dev, torch.float16)]
        if torch.cuda.is_bf16_supported():
            runs.append((dev, torch.bfloat16))
    return runs


def _limiter(shares: dict) -> str:
    top = next(iter(shares), "?")
    return f"{top} {100 * shares.get(top, 0):.0f}%"


def bench_one(
    arch, mode, variant: str, scale: int, device, dtype, tile: int, repeats: int, reference: bool, profile: bool
) -> dict:
    model = arch.build_model(variant, scale).requires_grad_(False).to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, tile, tile, generator=gen).to(device=device, dtype=dtype)
    out_mp = scale * scale * tile * tile / 1e6
    flops = _bench.count_flops(model, x)["total"] if dtype == torch.float32 or device.type == "cuda" else None
    executed = _bench.count_flops(model, x, reference=False)["total"] if flops else None
    row = {
        "variant": variant,
        "scale": scale,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "tile": tile,
        "gflop": flops / 1e9 if flops else None,
        "gflop_executed_fast": executed / 1e9 if executed else None,
    }

    def run_fast():
        with torch.inference_mode():
            model(x)

    def run_ref():
        with torch.inference_mode(), mode.reference_mode():
            model(x)

    fast = _bench.timeit(run_fast, device, repeats=repeats)
    row["fast"] = fast
    if reference:
        ref = _bench.timeit(run_ref, device, repeats=repeats)
        row["eager"] = ref
        row["speedup_wall"] = ref["wall_ms"] / fast["wall_ms"]
        row["speedup_cpu"] = ref["cpu_ms"] / max(fast["cpu_ms"], 1e-9)
    for key in ("fast", "eager"):
        if key in row:
            t = row[key]
            t["mp_per_s_wall"] = out_mp / (t["wall_ms"] / 1e3)
            t["mp_per_s_cpu"] = out_mp / (t["cpu_ms"] / 1e3) if t["cpu_ms"] > 0 else None
            t["ms_per_512_tile"] = t["wall_ms"] * (512 * 512) / (tile * tile)
            if flops:
                t["gflops_wall"] = flops / (t["wall_ms"] / 1e3) / 1e9
                t["gflops_cpu"] = flops / (t["cpu_ms"] / 1e3) / 1e9 if t["cpu_ms"] > 0 else None
                done = executed if key == "fast" else flops
                t["gflops_executed_cpu"] = done / (t["cpu_ms"] / 1e3) / 1e9 if t["cpu_ms"] > 0 else None
    row["ms_per_512_tile_scaled"] = tile != 512
    row["peak_memory_mb"] = _bench.peak_memory(run_fast, device) / 2**20
    if reference:
        row["peak_memory_eager_mb"] = _bench.peak_memory(run_ref, device) / 2**20
    if profile and device.type == "cpu":
        row["time_shares_fast"] = _bench.op_time_shares(run_fast)
        if reference:
            row["time_shares_eager"] = _bench.op_time_shares(run_ref)
    return row


def _cpu_engine(arch, variant: str, scale: int):
    """A float32 CPU TorchEngine on a factory model, or None when the engines are absent."""
    torch_engine = _bench.optional_submodule("engines.backends.torch_engine")
    if torch_engine is None:
        return None
    model = arch.build_model(variant, scale).requires_grad_(False)
    return torch_engine.TorchEngine(model, device="cpu", precision="fp32")


def tiled_overhead(arch, variant: str, scale: int, tile: int, repeats: int) -> dict | None:
    """Time of engines.tiling.runner.upscale_image on a 2x2-tile image over one whole-image call."""
    tiling = _bench.optional_submodule("engines.tiling.runner")
    engine = _cpu_engine(arch, variant, scale)
    if tiling is None or engine is None:
        return None
    side = 2 * tile
    image = torch.rand(1, side, side, 3, generator=torch.Generator().manual_seed(1))
    cpu = torch.device("cpu")

    def whole():
        with torch.inference_mode():
            engine(image.permute(0, 3, 1, 2).contiguous())

    tiled = _bench.timeit(lambda: tiling.upscale_image(engine, image, tile_size=tile), cpu, repeats=repeats)
    base = _bench.timeit(whole, cpu, repeats=repeats)
    return {
        "image": side,
        "tile": tile,
        "tiled_wall_ms": tiled["wall_ms"],
        "whole_wall_ms": base["wall_ms"],
        "overhead_wall": tiled["wall_ms"] / base["wall_ms"],
        "overhead_cpu": tiled["cpu_ms"] / max(base["cpu_ms"], 1e-9),
    }


def video_fps(arch, variant: str, scale: int, side: int, frames: int, repeats: int) -> dict | None:
    temporal = _bench.optional_submodule("engines.video.temporal")
    engine = _cpu_engine(arch, variant, scale)
    if temporal is None or engine is None:
        return None
    clip = torch.rand(frames, side, side, 3, generator=torch.Generator().manual_seed(2))
    t = _bench.timeit(
        lambda: temporal.upscale_video(engine, clip, tile_size=side), torch.device("cpu"), warmup=1, repeats=repeats
    )
    return {
        "frames": frames,
        "frame_side": side,
        "fps_wall": frames / (t["wall_ms"] / 1e3),
        "fps_cpu": frames / (t["cpu_ms"] / 1e3) if t["cpu_ms"] > 0 else None,
    }


def _inference(fn, x):
    def run():
        with torch.inference_mode():
            fn(x)

    return run


def compile_fast(arch, variant: str, scale: int, tile: int, repeats: int) -> dict:
    """Optional torch.compile of the fast path (compile time reported separately)."""
    model = arch.build_model(variant, scale).requires_grad_(False)
    x = torch.rand(1, 3, tile, tile)
    try:
        compiled = torch.compile(model, dynamic=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
        compile_s = time.perf_counter() - t0
        # Timed like bench_one's fast path (inference mode), so no recompile for grad mode.
        t = _bench.timeit(_inference(compiled, x), torch.device("cpu"), repeats=repeats)
        eager = _bench.timeit(_inference(model, x), torch.device("cpu"), repeats=repeats)
    except Exception as exc:  # inductor needs a C++ compiler; report instead of failing the run
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return {
        "compile_s": compile_s,
        "compiled_wall_ms": t["wall_ms"],
        "fast_wall_ms": eager["wall_ms"],
        "speedup_wall": eager["wall_ms"] / t["wall_ms"],
    }


# -- the engine table: upstream, eager, torch, OpenVINO, ONNX Runtime, the Upscale node ------------

IDLE_GAP_S = 0.2
UPSTREAM_REPO = Path(os.environ.get("PARAGONSR2_UPSTREAM_REPO", "/work/.mirror/Phhofm+ParagonSR2/repo"))
UPSTREAM_ARCH = "traiNNer/archs/paragonsr2_arch.py"


def upstream_module(scratch: Path):
    """(upstream's arch module, None) from the fetched Phhofm/ParagonSR2 snapshot, or (None, why).

    The file is read from the snapshot at run time into ``scratch`` (never copied into this
    repository) and imported with a stand-in for the one import it needs from its training
    framework (``traiNNer.utils.registry.ARCH_REGISTRY``, whose ``register()`` only records).
    """
    import subprocess
    import types

    if not UPSTREAM_REPO.exists():
        return None, f"no upstream snapshot at {UPSTREAM_REPO} (set PARAGONSR2_UPSTREAM_REPO)"
    try:
        source = subprocess.run(
            ["git", "-C", str(UPSTREAM_REPO), "show", f"HEAD:{UPSTREAM_ARCH}"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"cannot read {UPSTREAM_ARCH} from {UPSTREAM_REPO}: {exc}"
    path = scratch / "upstream_paragonsr2_arch.py"
    path.write_bytes(source)

    class Registry:
        def register(self, *args, **kwargs):
            return lambda obj: obj

    for name in ("traiNNer", "traiNNer.utils", "traiNNer.utils.registry"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["traiNNer.utils.registry"].ARCH_REGISTRY = Registry()  # pyright: ignore[reportAttributeAccessIssue]
    import importlib.util

    spec = importlib.util.spec_from_file_location("upstream_paragonsr2_arch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        return None, f"upstream's arch file does not import here: {type(exc).__name__}: {exc}"
    return module, None


def upstream_model(module, case: dict, weights: dict):
    """Upstream's network for a reference case, with the same weights as the pack's model."""
    factory = getattr(module, f"paragonsr2_{case['variant']}")
    model = factory(scale=int(case["scale"]), upsampler_alpha=float(case["upsampler_alpha"]))
    model.load_state_dict(weights, strict=True)
    return model.eval().requires_grad_(False)


class Method:
    """One way of running the network: ``setup()`` returns the call (its time is the first-call
    cost together with the first call); ``info`` says what actually ran."""

    def __init__(self, name: str, setup, clamp: bool = False):
        self.name, self.setup, self.clamp = name, setup, clamp
        self.call = None
        self.first_ms = None
        self.times: list[float] = []
        self.error = None
        self.output = None
        self.note = ""

    def start(self, x) -> None:
        t0 = time.perf_counter()
        try:
            self.call = self.setup()
            self.output = self.call(x)
        except Exception as exc:  # an absent runtime, a refused precision: reported, not fatal
            self.call, self.error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            return
        self.first_ms = 1e3 * (time.perf_counter() - t0)

    def run(self, x) -> None:
        if self.call is None:
            return
        # Let the previous method's thread pool go idle first: ONNX Runtime's workers spin after
        # a run (its default) and doubled the time of a torch call started right after it.
        time.sleep(IDLE_GAP_S)
        t0 = time.perf_counter()
        self.call(x)
        self.times.append(1e3 * (time.perf_counter() - t0))


def engine_methods(pack, arch_mode, up_module, case, model, weights, size: int, models_dir: Path) -> list[Method]:
    """The columns of the engine table for one variant (x: (1, 3, size, size) float 0..1)."""
    registry = pack.submodule("engines.backends.registry")
    contract = pack.submodule("engines.runtime.contract")

    def engine(backend: str, precision: str, **options):
        return lambda: registry.make_engine(backend, model, "cpu", precision, **options)

    def inference(fn):  # upstream's forward, timed in inference mode like the others
        def call(x):
            with torch.inference_mode():
                return fn(x)

        return call

    methods = []
    if up_module is not None:
        methods.append(Method("upstream", lambda: inference(upstream_model(up_module, case, weights))))

    def eager():
        def call(x):
            with torch.inference_mode(), arch_mode.reference_mode():
                return model(x)

        return call

    methods.append(Method("pack eager", eager))
    methods.append(Method("torch fp32", engine("torch", "fp32")))
    methods.append(Method("torch bf16", engine("torch", "bf16")))
    methods.append(Method("openvino fp32", engine("openvino", "fp32", models_dir=models_dir)))
    methods.append(Method("openvino bf16", engine("openvino", "bf16", models_dir=models_dir)))
    methods.append(Method("onnxruntime fp32", engine("onnxruntime", "fp32")))

    def node():
        packlib = _packlib()
        nodes = pack.submodule("nodes.image_nodes")
        shared = pack.submodule("nodes.shared")
        handle = contract.ModelHandle(model=model, name=f"{case['variant']} reference", precision="auto")

        def call(x):
            (out,) = packlib.run_node(nodes.ParagonSR2Upscale, model=handle, image=x.permute(0, 2, 3, 1))
            return out.permute(0, 3, 1, 2)

        call.engine = lambda: repr(shared.engine_for(handle))  # pyright: ignore[reportFunctionMemberAccess]
        return call

    methods.append(Method("Upscale node (defaults)", node, clamp=True))
    return methods


def _packlib():
    sys.path.insert(0, str(_bench.PACK_ROOT / "tests"))
    import packlib

    return packlib


def engine_table(variants, size: int, rounds: int, mm: dict) -> list[dict]:
    """Per variant: every method's warm median (interleaved rounds), first-call cost, max error
    against the fp32 reference (upstream's output, else the pack's eager one), ratio to upstream
    and roofline fraction (network FLOPs / time / the large-GEMM fp32 rate)."""
    import tempfile

    pack = _packlib()
    arch_mode = _bench.submodule("paragonsr2_arch.mode")
    rows = []
    with tempfile.TemporaryDirectory(prefix="paragonsr2-speed-") as scratch:
        scratch = Path(scratch)
        # the node's cache (OpenVINO IR, the auto probe) starts cold: first-call costs include them
        os.environ["PARAGONSR2_MODELS_DIR"] = str(scratch / "models")
        up_module, why = upstream_module(scratch)
        if up_module is None:
            print(f"# upstream column skipped: {why}", flush=True)
        for variant in variants:
            case = pack.reference_case_for(variant)
            model, _ = pack.load_reference(case)
            from safetensors.torch import load_file

            weights = load_file(str(pack.reference_dir() / case["weights"]))
            x = pack.natural_image(size, size, seed=0)
            flops = _bench.count_flops(model, x)["total"]
            methods = engine_methods(pack, arch_mode, up_module, case, model, weights, size, scratch / "models")
            for m in methods:
                m.start(x)
                if m.error:
                    print(f"# {variant} {m.name}: not run ({m.error})", flush=True)
            for _ in range(rounds):
                for m in methods:
                    m.run(x)
            ref = next(m.output for m in methods if m.call is not None and m.name in ("upstream", "pack eager"))
            up_ms = next((_median(m.times) for m in methods if m.name == "upstream" and m.times), None)
            up_best = next((min(m.times) for m in methods if m.name == "upstream" and m.times), None)
            for m in methods:
                row = {"variant": variant, "scale": int(case["scale"]), "size": size, "method": m.name}
                if m.call is None:
                    rows.append({**row, "error": m.error})
                    continue
                expected = ref.clamp(0, 1) if m.clamp else ref
                warm = _median(m.times)
                row.update(
                    warm_ms=warm,
                    best_ms=min(m.times),
                    best_vs_upstream=(up_best / min(m.times)) if up_best else None,
                    first_ms=m.first_ms,
                    max_err=float((m.output.float() - expected.float()).abs().max()),
                    vs_upstream=(up_ms / warm) if up_ms else None,
                    roofline=flops / (warm / 1e3) / 1e9 / mm["gflops_wall"],
                )
                engine_of = getattr(m.call, "engine", None)
                if engine_of is not None:
                    row["engine"] = engine_of()
                rows.append(row)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
            del methods
    return rows


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def print_engine_table(rows: list[dict]) -> None:
    print()
    print(
        "| variant | method | warm ms median (best) | x upstream median (best) | first call ms | max err vs fp32 "
        "| roofline | note |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} x{r['scale']} | {r['method']} | - | - | - | - | - | not run: {r['error']} |")
            continue
        print(
            f"| {r['variant']} x{r['scale']} | {r['method']} | {r['warm_ms']:.1f} ({r['best_ms']:.1f}) | "
            f"{_fmt(r['vs_upstream'], '.2f')} ({_fmt(r['best_vs_upstream'], '.2f')}) | "
            f"{r['first_ms']:.0f} | {r['max_err']:.1e} | {r['roofline']:.1%} | {r.get('engine', '')} |"
        )


def profile_ops(variants, size: int, threads: int = 1, top: int = 12) -> dict:
    """torch.profiler of one fast-path forward per variant (x2 reference weights, ``size`` px):
    the top aten ops by self CPU time and the attention share (SDPA + softmax), plus the
    per-category shares of thread CPU time (_bench.op_time_shares, which load cannot inflate)."""
    from torch.profiler import ProfilerActivity, profile

    pack = _packlib()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    report = {}
    try:
        for variant in variants:
            model, _ = pack.load_reference(pack.reference_case_for(variant))
            x = pack.natural_image(size, size, seed=0)
            with torch.inference_mode():
                model(x)  # weight caches, oneDNN primitives
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    model(x)
            events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
            total = sum(e.self_cpu_time_total for e in events) or 1
            ops = sorted(events, key=lambda e: -e.self_cpu_time_total)
            attention = sum(e.self_cpu_time_total for e in events if _is_attention(e.key))
            shares = _bench.op_time_shares(_inference(model, x))  # thread-CPU time: robust to load
            report[variant] = {
                "size": size,
                "threads": threads,
                "total_ms": total / 1e3,
                "attention_share": attention / total,
                "category_shares_thread_cpu": shares,
                "top": [
                    (e.key, e.self_cpu_time_total / 1e3, e.self_cpu_time_total / total, e.count) for e in ops[:top]
                ],
            }
            print(
                f"# profile {variant} x2 {size}px, {threads} thread(s): {total / 1e3:.0f} ms of aten self time, "
                f"attention {attention / total:.0%}",
                flush=True,
            )
            for name, ms, share, count in report[variant]["top"]:
                print(f"#   {name:<48} {ms:8.1f} ms {share:6.1%}  x{count}", flush=True)
            print("#   thread-CPU shares: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()), flush=True)
    finally:
        torch.set_num_threads(before)
    return report


def _is_attention(op: str) -> bool:
    return any(k in op for k in ("scaled_dot_product", "softmax", "_flash_attention"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"CI-sized: {QUICK_TILE}px tiles, 3 runs, no profile")
    parser.add_argument("--json", type=Path, help="write all results to this file")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tile", type=int, default=0, help="LR tile side (default: 512 on CUDA, per variant on CPU)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-eager", action="store_true", help="skip the straightforward-path comparison")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the fast path")
    parser.add_argument(
        "--engines",
        action="store_true",
        help="only the engine table: upstream, eager, torch fp32/bf16, OpenVINO fp32/bf16, ONNX Runtime, the node",
    )
    parser.add_argument(
        "--profile-ops", action="store_true", help="only torch.profiler's top ops and attention share (1 thread)"
    )
    parser.add_argument("--size", type=int, default=192, help="engine table: LR side of the x2 input (default 192)")
    parser.add_argument("--rounds", type=int, default=5, help="engine table: interleaved timed rounds (median)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    arch = _bench.submodule("paragonsr2_arch")
    mode = _bench.submodule("paragonsr2_arch.mode")
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    results = {"machine": machine, "runs": [], "matmul": {}, "tiled": [], "video": [], "compile": []}
    print(f"# torch {torch.__version__}, {machine['threads']} threads, load {machine['loadavg_start']}", flush=True)

    if args.profile_ops:
        results["profile"] = profile_ops(args.variants, args.size, threads=args.threads or 1)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    if args.engines:
        results["matmul"]["cpu:float32"] = mm = _bench.matmul_rate(torch.device("cpu"), torch.float32)
        print(f"# matmul cpu:float32: {mm['gflops_wall']:.1f} GFLOP/s wall", flush=True)
        results["engines"] = engine_table(args.variants, args.size, args.rounds, mm)
        machine["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        print_engine_table(results["engines"])
        print(f"threads {machine['threads']}; load average {machine['loadavg_start']} -> {machine['loadavg_end']}")
        return 0

    for device, dtype in _devices(args.device):
        key = f"{device.type}:{str(dtype).replace('torch.', '')}"
        results["matmul"][key] = mm = _bench.matmul_rate(device, dtype)
        print(f"# matmul {key}: {mm['gflops_wall']:.1f} GFLOP/s wall, {mm['gflops_cpu']:.1f} per CPU-s", flush=True)
        for variant in args.variants:
            for scale in args.scales:
                tile = args.tile or (
                    QUICK_TILE if args.quick else (512 if device.type == "cuda" else CPU_TILES[variant])
                )
                row = bench_one(
                    arch,
                    mode,
                    variant,
                    scale,
                    device,
                    dtype,
                    tile,
                    repeats,
                    reference=not args.no_eager,
                    profile=not args.quick,
                )
                for key_t in ("fast", "eager"):
                    t = row.get(key_t)
                    if t and t.get("gflops_wall"):
                        t["roofline_wall"] = t["gflops_wall"] / mm["gflops_wall"]
                        t["roofline_cpu"] = (t["gflops_cpu"] / mm["gflops_cpu"]) if t.get("gflops_cpu") else None
                        t["roofline_executed_cpu"] = (
                            (t["gflops_executed_cpu"] / mm["gflops_cpu"]) if t.get("gflops_executed_cpu") else None
                        )
                if row.get("time_shares_fast"):
                    row["limiter"] = _limiter(row["time_shares_fast"])
                results["runs"].append(row)
                print(json.dumps(_short(row)), flush=True)

    if args.device in ("auto", "cpu"):
        for variant in args.variants:
            tile = QUICK_TILE if args.quick else min(CPU_TILES[variant], 128)
            tiled = tiled_overhead(arch, variant, 2, tile, max(1, repeats // 2))
            if tiled:
                results["tiled"].append({"variant": variant, "scale": 2, **tiled})
            video = video_fps(arch, variant, 2, 32 if args.quick else 64, 4, max(1, repeats // 2))
            if video:
                results["video"].append({"variant": variant, "scale": 2, **video})
            if args.compile:
                results["compile"].append(
                    {"variant": variant, "scale": 2, **compile_fast(arch, variant, 2, tile, repeats)}
                )
    if args.device in ("auto", "cpu") and not args.quick:
        mm = results["matmul"]["cpu:float32"]
        results["engines"] = engine_table(args.variants, args.size, args.rounds, mm)
    machine["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_table(results)
    if results.get("engines"):
        print_engine_table(results["engines"])
    return 0


def _short(row: dict) -> dict:
    keep = {k: row[k] for k in ("variant", "scale", "device", "dtype", "tile") if k in row}
    keep["fast_ms"] = round(row["fast"]["wall_ms"], 1)
    if "eager" in row:
        keep["eager_ms"] = round(row["eager"]["wall_ms"], 1)
        keep["speedup_wall"] = round(row["speedup_wall"], 2)
        keep["speedup_cpu"] = round(row["speedup_cpu"], 2)
    return keep


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: dict) -> None:
    print()
    print(
        "| variant | x | device | tile | MP/s eager | MP/s fast | speedup wall (cpu) | ms/512 tile fast | "
        "GFLOP/s fast | roofline wall (cpu) | executed roofline cpu | peak MB | limiter (1-thread op share) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        f, e = r["fast"], r.get("eager", {})
        speed = f"{_fmt(r.get('speedup_wall'), '.2f')} ({_fmt(r.get('speedup_cpu'), '.2f')})"
        roof = f"{_fmt(f.get('roofline_wall'), '.1%')} ({_fmt(f.get('roofline_cpu'), '.1%')})"
        print(
            f"| {r['variant']} | {r['scale']} | {r['device']} {r['dtype']} | {r['tile']} | "
            f"{_fmt(e.get('mp_per_s_wall'), '.3f')} | {_fmt(f.get('mp_per_s_wall'), '.3f')} | {speed} | "
            f"{_fmt(f.get('ms_per_512_tile'), '.0f')} | {_fmt(f.get('gflops_wall'), '.2f')} | {roof} | "
            f"{_fmt(f.get('roofline_executed_cpu'), '.1%')} | "
            f"{r['peak_memory_mb']:.0f} | {r.get('limiter', '-')} |"
        )
    for key, mm in results["matmul"].items():
        print(f"matmul {key}: {mm['gflops_wall']:.1f} GFLOP/s wall, {mm['gflops_cpu']:.1f} GFLOP per CPU-second")
    for t in results["tiled"]:
        print(
            f"tiled {t['variant']} x{t['scale']}: {t['image']}px image in {t['tile']}px tiles = "
            f"{t['overhead_wall']:.2f}x the whole-image time (cpu {t['overhead_cpu']:.2f}x)"
        )
    for v in results["video"]:
        print(
            f"video {v['variant']} x{v['scale']}: {v['frame_side']}px frames {v['fps_wall']:.2f} fps "
            f"(per CPU-s {_fmt(v['fps_cpu'], '.2f')})"
        )
    for c in results["compile"]:
        print(f"compile {c['variant']}: {c}")
    m = results["machine"]
    print(f"threads {m['threads']}; load average {m['loadavg_start']} -> {m['loadavg_end']}")


if __name__ == "__main__":
    sys.exit(main())
