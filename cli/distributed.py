"""``upscale --workers N`` / ``--ray-address``: a folder or a video over many GPUs or machines, on Ray.

Ray is imported only here and only when these options are used. The library work stays in
engines/ (engines/video/chunks.py: the chunk planner and the state at frame k); the worker side
is cli/ray_tasks.py.

Folders: one task per group of images (groups small enough that every worker gets several);
each worker writes the same bytes the single-process run writes (same functions).
Videos: the driver decodes the video once to find the scene cuts and every frame's timestamp,
plans chunks (chunks.plan_chunks), and each task decodes its own range plus the warm-up prefix,
upscales it and encodes a segment; the driver joins the segments without re-encoding and copies
the source's audio (video_io.remux).

Where data goes (``--transfer``): "shared" when the input and the output folder are paths every
worker sees (always true for the local cluster this command starts; for a joined cluster when
all its nodes are this machine, or when you say so for a network file system); "stream"
otherwise: the driver ships the input bytes through Ray's object store and the workers return
encoded results (images, video segments), never raw frames. Stream is always correct; shared
moves nothing through the driver.

Faults: tasks are retried by Ray when their worker dies (max_retries); every output is written
under a temporary name and renamed when complete, so a retried task replaces nothing with a
partial file and a frame is never written twice. Ctrl-C (or SIGTERM) cancels every task, waits
for them to stop, removes this job's temporary files and segments, and stops the local cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..engines.runtime.files import atomic_write_bytes, is_partial
from ..engines.video import chunks, scene_cuts
from . import ray_bootstrap, video_io
from .checks import UsageError
from .image_io import CliError
from .progress import Progress

TASK_RETRIES = 3  # worker deaths survived per task
CANCEL_WAIT_S = 30.0  # how long Ctrl-C waits for cancelled tasks to stop
GROUPS_PER_WORKER = 4  # folder: aim for this many tasks per worker (load balance vs overhead)
MAX_GROUP = 16  # folder: at most this many images per task


def add_arguments(p) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run on Ray with N workers: a local cluster this command starts and stops "
        "(default with --devices/--ray-address: one per GPU, else 2)",
    )
    p.add_argument(
        "--devices", default=None, metavar="LIST", help="Ray workers' devices: cuda:0,cuda:1 (one worker each) or cpu"
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="join this Ray cluster (default $RAY_ADDRESS) instead of starting one",
    )
    p.add_argument(
        "--transfer",
        default="auto",
        choices=("auto", "shared", "stream"),
        help="Ray: shared = workers read the input and write the output paths themselves "
        "(one machine or a shared file system); stream = through the driver; auto = "
        "shared when every node is this machine",
    )
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=chunks.DEFAULT_CHUNK_FRAMES,
        metavar="N",
        help="Ray video: frames per task in a long shot (scene cuts also start tasks)",
    )
    p.add_argument(
        "--lossless",
        action="store_true",
        help="video: encode exact 8-bit RGB (H.264 RGB, qp 0) instead of the lossy default",
    )


def requested(args) -> bool:
    return bool(getattr(args, "workers", None) or getattr(args, "ray_address", None) or getattr(args, "devices", None))


def _address(args) -> str | None:
    return getattr(args, "ray_address", None) or os.environ.get("RAY_ADDRESS")


def _token_mode_for_joining() -> None:
    """Ray 2.60 sends its token (RAY_AUTH_TOKEN or ~/.ray/auth_token, which `ray start` writes)
    to an existing cluster only in token mode, and `ray start --head` turns token authentication
    on by default: without this the join is refused ("missing authorization header"). Ray reads
    the mode when it is imported, so this runs before."""
    if "RAY_AUTH_MODE" not in os.environ and (
        os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def _ray(joining: bool = False):
    if joining and "ray" not in sys.modules:
        _token_mode_for_joining()
    try:
        import ray
    except ImportError:
        raise CliError("--workers/--ray-address need Ray, which is not installed: pip install ray") from None
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(ray_bootstrap)
    return ray


# -- the cluster ----------------------------------------------------------------------------
@dataclass
class Cluster:
    ray: object
    workers: int
    gpus_per_task: float
    threads: int
    device: str
    started: bool
    local_only: bool
    remote: object = field(default=None, repr=False)


def _parse_devices(text: str | None) -> list[str]:
    if not text:
        return []
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit()):
            raise CliError(f"--devices: {d!r} is not cpu or cuda:INDEX")
    if "cpu" in devices and len(devices) > 1:
        raise CliError("--devices: give either cpu or a list of cuda:INDEX")
    return devices


@contextlib.contextmanager
def cluster(args):
    """Start (and at the end stop) a private local cluster, or join one. (Ray binds its
    services to the machine's address, not 127.0.0.1: ray.init resolves loopback addresses to
    a reachable one; the dashboard is off and Ray's token authentication is on by default.)"""
    address = _address(args)
    ray = _ray(joining=bool(address))
    devices = _parse_devices(args.devices)
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    if address:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as exc:
            raise CliError(
                f"cannot join the Ray cluster at {address}: {exc} (a cluster with token "
                "authentication also needs its token: RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
            ) from None
        try:
            total = ray.cluster_resources()
            gpus = int(total.get("GPU", 0)) if devices != ["cpu"] and args.device != "cpu" else 0
            workers = args.workers or gpus or int(total.get("CPU", 1))
            here = ray.util.get_node_ip_address()
            local_only = all(n["NodeManagerAddress"] == here for n in ray.nodes() if n["Alive"])
            yield _make(ray, workers, gpus > 0, 1, started=False, local_only=local_only)
        finally:
            ray.shutdown()
        return
    import torch

    cuda = [int(d[5:]) for d in devices if d.startswith("cuda:")]
    if not devices and args.device != "cpu" and torch.cuda.is_available():
        cuda = list(range(torch.cuda.device_count()))
    workers = args.workers or len(cuda) or 2
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cuda:  # the workers see exactly the chosen GPUs; Ray gives each task one of them
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in cuda)
    try:
        ray.init(
            address="local",
            num_cpus=workers,
            num_gpus=len(cuda),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=256 * 1024 * 1024,
        )
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        threads = 2 if cuda else max(1, (os.cpu_count() or 1) // workers)
        yield _make(ray, workers, bool(cuda), threads, started=True, local_only=True)
    finally:
        ray.shutdown()


def _using(running: Cluster | None, args):
    return contextlib.nullcontext(running) if running is not None else cluster(args)


def _make(ray, workers, gpu, threads, *, started, local_only) -> Cluster:
    options = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_retries": TASK_RETRIES, "retry_exceptions": False}
    remote = ray.remote(**options)(ray_bootstrap.run_task)
    return Cluster(
        ray=ray,
        workers=workers,
        gpus_per_task=1 if gpu else 0,
        threads=threads,
        device="cuda" if gpu else "cpu",
        started=started,
        local_only=local_only,
        remote=remote,
    )


def _transfer(args, c: Cluster) -> str:
    if args.transfer != "auto":
        return args.transfer
    return "shared" if c.local_only else "stream"


# -- running tasks --------------------------------------------------------------------------
class Job:
    """Submit tasks, at most ``workers`` in flight, collect results in completion order; on
    any exception (Ctrl-C included) cancel what is running and wait until it stopped."""

    def __init__(self, c: Cluster, job: dict, kind: str):
        self.c, self.job, self.kind = c, job, kind
        self.pack_root = str(Path(__file__).resolve().parents[1])
        self.pack_name = __name__.split(".")[0]
        self.pending: dict = {}
        self.payload = None  # one object for every task (the source video in stream mode)

    def run(self, items: list[dict], on_result):
        ray = self.c.ray
        queue = list(items)
        try:
            while queue or self.pending:
                while queue and len(self.pending) < self.c.workers:
                    item = queue.pop(0)
                    ref = self.c.remote.remote(self.pack_root, self.pack_name, self.kind, self.job, item, self.payload)
                    self.pending[ref] = item
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    self.pending.pop(ref)
                    on_result(ray.get(ref))
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        ray = self.c.ray
        refs = list(self.pending)
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if refs:
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
        self.pending.clear()


last_summary = None  # the last job's Summary in this process (benchmarks/distributed.py reads it)


class Summary:
    """Per-worker throughput and the job's total, printed at the end."""

    def __init__(self, unit: str):
        self.unit = unit
        self.start = time.perf_counter()
        self.workers: dict = {}

    def add(self, result: dict) -> None:
        w = self.workers.setdefault(f"{result['host']}:{result['pid']}", [0, 0, 0.0, 0.0])
        w[0] += 1
        w[1] += result["frames"]
        w[2] += result["seconds"]
        w[3] += result["cpu_seconds"]

    @property
    def cpu_seconds(self) -> float:
        return sum(w[3] for w in self.workers.values())

    def print(self, done: int) -> None:
        global last_summary
        last_summary = self
        self.total = time.perf_counter() - self.start
        print(f"{'worker':<28} {'tasks':>5} {self.unit:>7} {'busy s':>8} {'cpu s':>8} {self.unit + '/s':>9}")
        for name, (tasks, frames, busy, cpu) in sorted(self.workers.items()):
            print(f"{name:<28} {tasks:>5} {frames:>7} {busy:>8.2f} {cpu:>8.2f} {frames / max(busy, 1e-9):>9.2f}")
        print(
            f"total: {done} {self.unit} in {self.total:.2f} s ({done / max(self.total, 1e-9):.2f} {self.unit}/s) "
            f"on {len(self.workers)} worker(s)"
        )


def _job(args, c: Cluster, transfer: str) -> dict:
    return {
        "model": str(args.model.resolve()),
        "sharpness": args.sharpness,
        "device": c.device,
        "backend": getattr(args, "backend", "torch"),
        "precision": args.precision,
        "tile": args.tile,
        "threads": c.threads,
        "transfer": transfer,
    }


def _remove_partials(folder: Path, names: list[str]) -> None:
    """Temporary files of this job's outputs (atomic_output names them after the output)."""
    prefixes = tuple(f".{n}." for n in names)
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(prefixes) and is_partial(entry):
                with contextlib.suppress(OSError):
                    entry.unlink()


# -- the command ----------------------------------------------------------------------------
def run(args, kind: str, plan) -> int:
    """``upscale`` with --workers/--ray-address/--devices; ``plan``: video_io.plan_output of an
    explicit video output (None otherwise). Checked like the single-process run, then split."""
    from . import app, jobs
    from .checks import check_output

    if kind not in ("folder", "video"):
        raise UsageError("--workers/--ray-address split folders and videos; upscale a single image without them")
    _ray(joining=bool(_address(args)))  # missing Ray is said before anything is loaded or written
    scale = app.load_model(args.model, args.sharpness).scale  # on the CPU: the driver only needs the scale
    dst = args.output or jobs.default_target(args.input, kind, scale)
    if kind == "folder":
        return upscale_folder(args, dst)
    if args.output is None:
        check_output(dst, kind)
    if dst.suffix.lower() not in video_io.CONTAINERS:
        raise UsageError(
            f"--workers joins encoded segments: the output must be a video file "
            f"({' '.join(video_io.VIDEO_OUTPUT_SUFFIXES)}), not {dst.suffix or 'no extension'}"
        )
    return upscale_video(args, dst, plan or video_io.plan_output(dst, args.input), scale)


# -- folders --------------------------------------------------------------------------------
def upscale_folder(args, out_dir: Path, running: Cluster | None = None) -> int:
    from . import jobs

    src: Path = args.input
    files, kept = jobs.folder_plan(src, out_dir, args)
    if kept:
        print(f"skipping {len(kept)} image(s) already done in {out_dir}")
    if not files:
        return 0
    targets = [out_dir / p.name for p in files]
    out_dir.mkdir(parents=True, exist_ok=True)
    with _using(running, args) as c:
        transfer = _transfer(args, c)
        size = max(1, min(MAX_GROUP, math.ceil(len(files) / (c.workers * GROUPS_PER_WORKER))))
        items = []
        for i in range(0, len(files), size):
            group, outs = files[i : i + size], targets[i : i + size]
            items.append(
                {
                    "names": [p.name for p in group],
                    "inputs": [str(p.resolve()) if transfer == "shared" else p.read_bytes() for p in group],
                    "outputs": [str(t.resolve()) for t in outs],
                }
            )
        job = _job(args, c, transfer)
        job["image_args"] = _picture_args(args)
        progress = Progress(f"{src.name} images", enabled=not args.quiet, unit="image")
        summary, state = Summary("images"), {"done": 0, "errors": []}

        def on_result(result):
            for name, blob in zip(result["done"], result["blobs"]):  # stream mode: written here
                atomic_write_bytes(out_dir / name, blob)
            summary.add(result)
            state["done"] += len(result["done"])
            state["errors"] += result["errors"]
            progress(state["done"] + len(state["errors"]), len(files))

        print(f"{len(files)} images in {len(items)} task(s) on {c.workers} {c.device} worker(s), transfer: {transfer}")
        try:
            Job(c, job, "images").run(items, on_result)
        finally:
            progress.close()
            _remove_partials(out_dir, [t.name for t in targets])
    for error in state["errors"]:
        print(f"error: {error}", file=sys.stderr)
    summary.print(state["done"])
    print(
        f"{state['done'] + len(kept)} of {len(files) + len(kept)} images in {out_dir} "
        f"({state['done']} written, {len(kept)} kept, {len(state['errors'])} failed)"
    )
    return 1 if state["errors"] else 0


def _picture_args(args) -> dict:
    """What jobs.upscale_picture reads besides tile/quiet/overwrite (animated images are clips)."""
    return {
        "frames_per_chunk": args.frames_per_chunk,
        "temporal_strength": args.temporal_strength,
        "scene_cut_sensitivity": args.scene_cut_sensitivity,
    }


# -- videos ---------------------------------------------------------------------------------
@dataclass
class Scan:
    frames: int
    cuts: list[int]
    pts: list
    rate: object


def scan_video(path: Path, sensitivity: float, progress=None) -> Scan:
    """Decode the video once: frame count, every frame's timestamp and the scene cuts, judged
    exactly as the single-process run judges them (same thumbnails, same rule)."""
    import numpy as np
    import torch

    reader = video_io.VideoReader(path)
    finder = chunks.CutFinder(sensitivity)
    pts: list = []
    batch: list = []
    try:
        for frame in reader._container.decode(reader.stream):
            pts.append(frame.pts)
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == 16:
                finder.add(torch.from_numpy(np.stack(batch)).float().div_(255))
                batch = []
                if progress is not None:
                    progress(len(pts), max(len(pts), reader.frames))
        if batch:
            finder.add(torch.from_numpy(np.stack(batch)).float().div_(255))
        rate = reader.rate
    finally:
        reader.close()
    return Scan(len(pts), finder.cuts, pts, rate)


def _seekable(pts: list) -> bool:
    """Every frame has a timestamp and they increase: a worker can seek to its first frame.
    Otherwise workers decode from the start and count frames (slower, still exact)."""
    return all(p is not None for p in pts) and all(a < b for a, b in itertools.pairwise(pts))


def index_video(path: Path):
    """(every frame's timestamp in presentation order, frame rate) from the container's packets
    alone, no decoding: what lets the scan itself be split over the workers. None when packets
    lack timestamps or repeat them (the driver then decodes the video itself)."""
    av = video_io._av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        pts = []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
    pts.sort()
    if not pts or len(set(pts)) != len(pts):
        return None
    return pts, rate


def scan_parallel(c: Cluster, job: dict, index, source, payload, progress) -> Scan:
    """The scene cuts, found by the workers over ranges of the video: a range [s, e) decodes
    from s - HISTORY_FRAMES, so every decision is the single-process one (scene_cuts: a pure
    function of the frames t - H .. t)."""
    pts, rate = index
    n, history = len(pts), chunks.history_frames()
    size = max(4 * history, math.ceil(n / (GROUPS_PER_WORKER * c.workers)))
    items = []
    for i, first in enumerate(range(0, n, size)):
        decode_start = max(0, first - history)
        items.append(
            {
                "index": i,
                "start": first,
                "end": min(n, first + size),
                "decode_start": decode_start,
                "first_pts": pts[decode_start],
                "source": source,
            }
        )
    cuts, done = [], [0]

    def on_result(result):
        cuts.extend(result["cuts"])
        done[0] += result["frames"]
        progress(done[0], n)

    runner = Job(c, job, "scan")
    runner.payload = payload
    runner.run(items, on_result)
    return Scan(n, sorted(cuts), pts, rate)


def upscale_video(args, dst: Path, plan, scale: int, running: Cluster | None = None) -> int:
    """``running``: a cluster to use instead of starting one (benchmarks/distributed.py)."""
    src: Path = args.input
    if dst.exists() and not args.overwrite:
        raise UsageError(f"{dst} already exists; pass --overwrite to replace it, or choose another --output")
    sensitivity = scene_cuts.DEFAULT_SENSITIVITY if args.scene_cut_sensitivity is None else args.scene_cut_sensitivity
    alpha = float(args.temporal_strength)
    if args.chunk_frames < 1:
        raise UsageError(f"--chunk-frames must be at least 1, got {args.chunk_frames}")
    start = time.perf_counter()
    token = uuid.uuid4().hex[:8]
    segments: list[Path] = []
    with _using(running, args) as c:
        transfer = _transfer(args, c)
        ready = time.perf_counter()
        source = str(src.resolve()) if transfer == "shared" else None
        job = _job(args, c, transfer)
        job["video"] = {
            "temporal_strength": alpha,
            "scene_cut_sensitivity": sensitivity,
            "motion_adaptive": False,
            "frames_per_chunk": args.frames_per_chunk,
            "codec": plan.codec,
            "lossless": bool(args.lossless),
        }
        progress = Progress(f"{src.name} frames", enabled=not args.quiet, unit="frame")
        summary, done = Summary("frames"), [0]
        try:
            # stream mode: the source is stored once and handed to every task (Ray resolves it)
            payload = c.ray.put(src.read_bytes()) if transfer == "stream" else None
            index = index_video(src)
            scan_bar = Progress(f"{src.name} scan", enabled=not args.quiet, unit="frame")
            try:
                if index is not None:
                    scan = scan_parallel(c, job, index, source, payload, scan_bar)
                else:
                    scan = scan_video(src, sensitivity, scan_bar)
            finally:
                scan_bar.close()
            if scan.frames == 0:
                raise CliError(f"{src}: no frames could be decoded")
            job["video"]["rate"] = str(scan.rate)
            chunk_plan = chunks.plan_chunks(scan.frames, scan.cuts, alpha, args.chunk_frames)
            scanned = time.perf_counter() - ready
            # Segments: hidden names beside the output (same folder: the join reads them locally).
            segments = [dst.with_name(f".{dst.stem}.{token}.seg{ch.index:05d}{dst.suffix}") for ch in chunk_plan]
            seekable = _seekable(scan.pts)
            items = [
                {
                    "index": ch.index,
                    "start": ch.start,
                    "end": ch.end,
                    "decode_start": ch.decode_start,
                    "first_pts": scan.pts[ch.decode_start] if seekable else None,
                    "source": source,
                    "segment": str(segments[ch.index]),
                }
                for ch in chunk_plan
            ]
            print(
                f"{src.name}: {scan.frames} frames, {len(scan.cuts)} scene cut(s), {len(chunk_plan)} chunk(s) "
                f"on {c.workers} {c.device} worker(s), transfer: {transfer}; cluster up in {ready - start:.1f} s, "
                f"scanned ({'by the workers' if index is not None else 'here'}) in {scanned:.2f} s"
            )

            def on_result(result):
                if result["blob"] is not None:  # stream mode: the segment came back as bytes
                    atomic_write_bytes(segments[result["index"]], result["blob"])
                summary.add(result)
                done[0] += result["frames"]
                progress(done[0], scan.frames)

            runner = Job(c, job, "video")
            runner.payload = payload
            runner.run(items, on_result)
            progress.close()
            joined = video_io.remux(segments, src if plan.copy else None, dst, overwrite=args.overwrite)
        finally:
            progress.close()
            for seg in segments:
                seg.unlink(missing_ok=True)
            _remove_partials(dst.parent, [s.name for s in segments] + [dst.name])
    if joined.frames != scan.frames:
        raise CliError(f"joined {joined.frames} frames, the source has {scan.frames}")
    summary.print(done[0])
    kept = f", kept {', '.join(joined.copied)}" if joined.copied else ""
    print(f"wrote {dst} ({done[0]} frames, x{scale}{kept}) in {time.perf_counter() - start:.2f} s")
    return 0
