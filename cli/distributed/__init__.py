"""``upscale --workers N`` / ``--ray-address``: a folder or a video over many GPUs or machines, on Ray.

Ray is imported only inside this package and only when these options are used (cluster.py).
One job per module:

- options.py: the command-line options, and whether Ray was asked for;
- cluster.py: start a private local cluster or join one; where data goes (shared / stream);
- tasks.py: the job description every task gets, submitting tasks and cancelling them;
- summary.py: per-worker throughput, printed at the end;
- folder.py: a folder of images fanned out in groups;
- scan.py: a video's frame count, timestamps and scene cuts (packets indexed here, cuts found
  by the workers over ranges);
- video.py: a video fanned out in chunks and the segments joined;
- command.py: ``upscale`` with these options: checked like the single-process run, then split;
- bootstrap.py, worker.py, worker_engine.py, worker_images.py, worker_video.py: what runs on a
  worker (no Ray import).

The library work stays in engines/ (engines/video/chunks.py: the chunk planner and the state
at frame k).
"""

from .command import run
from .options import add_arguments, requested

__all__ = ["add_arguments", "requested", "run"]
