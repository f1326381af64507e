"""A video over the workers: scan, plan chunks (engines/video/chunks.plan_chunks), each task
decodes its range plus the warm-up prefix, upscales it and encodes a segment; the driver joins
the segments without re-encoding and copies the source's audio and subtitles.

Segments are hidden files beside the output (the join reads them locally), written under
temporary names and renamed when complete, so a retried task replaces nothing with a partial
file and a frame is never written twice.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from ...engines.runtime.files import atomic_output, atomic_write_bytes
from ...engines.video import chunks, remux
from ..checks import UsageError
from ..image_io import CliError
from ..progress import Progress
from ..video_plan import VideoPlan
from .cluster import Cluster, transfer_mode, using
from .scan import index_packets, scan_here, scan_parallel, seekable
from .summary import Summary
from .tasks import TaskRunner, describe_job, remove_partials


def upscale_video(args, dst: Path, plan: VideoPlan, scale: int, running: Cluster | None = None) -> int:
    """``plan``: the output plan (codec, options, streams copied); ``running``: a cluster to use
    instead of starting one (benchmarks/distributed.py)."""
    src: Path = args.input
    if dst.exists() and not args.overwrite:
        raise UsageError(f"{dst} already exists; pass --overwrite to replace it, or choose another --output")
    options = plan.options
    if args.chunk_frames < 1:
        raise UsageError(f"--chunk-frames must be at least 1, got {args.chunk_frames}")
    start = time.perf_counter()
    token = uuid.uuid4().hex[:8]
    segments: list[Path] = []
    with using(running, args) as c:
        transfer = transfer_mode(args, c)
        ready = time.perf_counter()
        source = str(src.resolve()) if transfer == "shared" else None
        job = describe_job(args, c, transfer)
        job.update(video=options.to_dict(), codec=plan.codec, token=token, suffix=dst.suffix.lower())
        progress = Progress(f"{src.name} frames", enabled=not args.quiet, unit="frame")
        summary, done = Summary("frames"), [0]
        try:
            # stream mode: the source is stored once and handed to every task (Ray resolves it)
            payload = c.ray.put(src.read_bytes()) if transfer == "stream" else None
            index = index_packets(src)
            scan_bar = Progress(f"{src.name} scan", enabled=not args.quiet, unit="frame")
            try:
                if index is not None:
                    job["time_base"] = str(index[2])
                    scan = scan_parallel(c, job, index, source, payload, scan_bar)
                else:
                    scan = scan_here(src, options.scene_cut_sensitivity, scan_bar)
            finally:
                scan_bar.close()
            if scan.frames == 0:
                raise CliError(f"{src}: no frames could be decoded")
            job["time_base"] = str(scan.time_base)
            chunk_plan = chunks.plan_chunks(scan.frames, scan.cuts, options.temporal_strength, args.chunk_frames)
            scanned = time.perf_counter() - ready
            segments = [dst.with_name(f".{dst.stem}.{token}.seg{ch.index:05d}{dst.suffix}") for ch in chunk_plan]
            can_seek = seekable(scan.pts)
            items = [
                {
                    "index": ch.index,
                    "start": ch.start,
                    "end": ch.end,
                    "decode_start": ch.decode_start,
                    "first_pts": scan.pts[ch.decode_start] if can_seek else None,
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

            TaskRunner(c, job, "video", payload).run(items, on_result)
            progress.close()
            if done[0] != scan.frames:
                raise CliError(f"the workers upscaled {done[0]} frames, the source has {scan.frames}")
            with atomic_output(dst, overwrite=args.overwrite) as tmp:
                notes = remux.join_segments(segments, tmp, source=src if plan.streams.copy else None)
        finally:
            progress.close()
            for seg in segments:
                seg.unlink(missing_ok=True)
            remove_partials(dst.parent, [s.name for s in segments] + [dst.name])
    summary.print(done[0])
    kept = [n[len("kept ") :] for n in notes if n.startswith("kept ")]
    said = f", kept {', '.join(kept)}" if kept else ""
    print(f"wrote {dst} ({done[0]} frames, x{scale}{said}) in {time.perf_counter() - start:.2f} s")
    return 0
