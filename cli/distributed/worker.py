"""What a Ray worker runs (no Ray import here): which task, timed (worker_images.py,
worker_video.py do the work). Inputs and results are plain values (bootstrap.py).

Transfer modes (chosen by the driver, cluster.transfer_mode):
- "shared": the input and the output folder are paths every worker sees (one machine, or a
  network file system). The worker reads the input itself and writes its result straight into
  the output folder under a temporary name (engines/runtime/files.atomic_output), so no pixel
  passes through the driver.
- "stream": the driver sent the input bytes; the worker returns the encoded result (PNG/JPEG
  bytes, or the encoded video segment), which the driver writes. Always correct, costs the
  driver's bandwidth (encoded bytes only, never raw frames).
"""

from __future__ import annotations

import os
import socket
import time

import torch

from . import worker_images, worker_video


def run(kind: str, job: dict, item: dict, payload=None) -> dict:
    """``payload``: what every task of the job shares (the source video's bytes in stream mode)."""
    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    start, cpu = time.perf_counter(), time.process_time()
    if kind == "images":
        result = worker_images.upscale_images(job, item)
    elif kind == "scan":
        result = worker_video.scan_range(job, item, payload)
    else:
        result = worker_video.upscale_chunk(job, item, payload)
    # wall and CPU seconds: on a busy machine the gap is time spent waiting for a core
    result.update(
        host=socket.gethostname(),
        pid=os.getpid(),
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu,
    )
    return result
