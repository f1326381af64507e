"""What the driver must know about a video before planning chunks: its frame count, every
frame's timestamp and the scene cuts, judged exactly as the single-process run judges them.

With timestamps on the packets the driver only indexes them (no decoding) and the workers
find the cuts over ranges of the video (scan_parallel); otherwise the driver decodes the video
itself (scan_here).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ...engines.video import chunks, container
from .cluster import Cluster
from .folder import GROUPS_PER_WORKER
from .tasks import TaskRunner


@dataclass
class Scan:
    frames: int
    cuts: list[int]
    pts: list
    rate: Fraction
    time_base: Fraction


def scan_here(path: Path, sensitivity: float, progress=None) -> Scan:
    """Decode the video once in this process (the pipeline's reader): frame count, timestamps
    and scene cuts."""
    import torch

    finder = chunks.CutFinder(sensitivity)
    pts: list = []
    batch: list = []
    with container.open_source(path) as source:
        total = source.expected_frames or 0
        for frame in source.frames():
            pts.append(frame.pts)
            batch.append(frame.image)
            if len(batch) == 16:
                finder.add(torch.stack(batch))
                batch = []
                if progress is not None:
                    progress(len(pts), max(len(pts), total))
        if batch:
            finder.add(torch.stack(batch))
        info = source.info
    return Scan(len(pts), finder.cuts, pts, info.rate, info.time_base)


def seekable(pts: list) -> bool:
    """Every frame has a timestamp and they increase: a worker can seek to its first frame.
    Otherwise workers decode from the start and count frames (slower, still exact)."""
    return all(p is not None for p in pts) and all(a < b for a, b in itertools.pairwise(pts))


def index_packets(path: Path):
    """(every frame's timestamp in presentation order, frame rate, time base) from the packets
    alone, no decoding: what lets the scan itself be split over the workers. None when packets
    lack timestamps or repeat them (the driver then decodes the video itself)."""
    av = container.require_av()
    with av.open(str(path)) as media:
        stream = media.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        time_base = Fraction(stream.time_base or Fraction(1, 90000))
        pts = []
        for packet in media.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
    pts.sort()
    if not pts or len(set(pts)) != len(pts):
        return None
    return pts, rate, time_base


def scan_parallel(c: Cluster, job: dict, index, source, payload, progress) -> Scan:
    """The scene cuts, found by the workers over ranges of the video: a range [s, e) decodes
    from s - HISTORY_FRAMES, so every decision is the single-process one (scene_cuts: a pure
    function of the frames t - H .. t)."""
    pts, rate, time_base = index
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

    TaskRunner(c, job, "scan", payload).run(items, on_result)
    return Scan(n, sorted(cuts), pts, rate, time_base)
