"""upscale --workers: real Ray clusters of 2 CPU workers started by the command, real files, real
signals. Outputs are compared with the single-process command on the same inputs: byte for byte
for PNG; for video (encoded --lossless so that frames can be compared exactly) same frame
count, fps, audio packets and identical frames (benchmarks/distributed.py --compare measures
the same for the default lossy codec: docs/distributed.md).

Each run starts and stops its own cluster (about 15-20 s on a 2-core machine)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from packlib import PACK_ROOT, natural_image
from paragonsr2_pack import cli

try:
    import av
except ImportError:  # the video tests skip
    av = None
try:
    import psutil
except ImportError:
    psutil = None


def _ray_skip_reason() -> str | None:
    """Why the Ray tests cannot run here, or None.

    Ray deliberately binds its services to the machine's network address, never to 127.0.0.1
    (ray.init rewrites loopback). These tests may only talk to this machine's loopback, so they
    run in a private network namespace whose only interface is lo (scripts/test.sh starts one
    with `unshare --net`); there Ray falls back to 127.0.0.1. Set PARAGONSR2_RAY_ANY_ADDRESS=1 to
    run them on the machine's address anyway (fine on your own machine)."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install ray); the distributed tests need it"
    if os.environ.get("PARAGONSR2_RAY_ANY_ADDRESS") == "1":
        return None
    from ray._private.services import get_node_ip_address

    address = get_node_ip_address()
    if not address.startswith("127."):
        return (
            f"Ray would bind to {address}, not loopback: run these tests through scripts/test.sh "
            "(a private network namespace) or set PARAGONSR2_RAY_ANY_ADDRESS=1"
        )
    return None


_RAY_SKIP = _ray_skip_reason()
needs_ray = pytest.mark.skipif(_RAY_SKIP is not None, reason=_RAY_SKIP or "")
needs_av = pytest.mark.skipif(av is None, reason="PyAV is not installed; the video tests need it")
needs_psutil = pytest.mark.skipif(psutil is None, reason="psutil finds the Ray worker processes to kill or wait for")


LAUNCHER = [sys.executable, str(PACK_ROOT / "paragonsr2.py")]
RUN_TIMEOUT = 400


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, arch):
    torch.manual_seed(0)
    model = arch.build_model("realtime", 2)
    with torch.no_grad():  # a non-trivial residual so the network path shows in the output
        model.detail_gain.fill_(0.5)
    return arch.save_model(model, tmp_path_factory.mktemp("model") / "realtime_x2.safetensors")


def _shot(h, w, n, seed):
    big = natural_image(h, w + 2 * n, seed=seed)
    return torch.cat([big[..., 2 * t : 2 * t + w] for t in range(n)]).permute(0, 2, 3, 1)


def make_clip(path: Path, lengths=(8, 26, 8), h=40, w=48, rate=24) -> int:
    """Three shots (two scene cuts), panning 2 px per frame, H.264 with a keyframe every 12
    frames, and an AAC stereo sine track as long as the video."""
    rgb = (torch.cat([_shot(h, w, n, seed=i + 1) for i, n in enumerate(lengths)]) * 255).round().byte().numpy()
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "12", "g": "12"}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        samples = int(48000 * len(rgb) / rate)
        pcm = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
        for frame in rgb:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        for i in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(np.stack([pcm[i : i + 1024]] * 2), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return len(rgb)


def read_video(path: Path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate
        decoded = list(c.decode(stream))
        frames = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
        times = [float(f.time) for f in decoded]
    with av.open(str(path)) as c:
        audio = [bytes(p) for p in c.demux(audio=0) if p.size]
    return frames, rate, audio, times


def assert_same_video(got: Path, expected: Path, n_frames: int):
    a, b = read_video(got), read_video(expected)
    assert a[0].shape[0] == b[0].shape[0] == n_frames  # no frame missing or doubled
    assert a[1] == b[1]  # fps
    assert np.allclose(a[3], b[3], atol=1e-3)  # every frame's time (segments keep the source's)
    assert a[2] == b[2] and a[2]  # the source's audio, copied
    assert np.abs(a[0].astype(np.int16) - b[0].astype(np.int16)).max() == 0  # --lossless: the same frames


def single_process(args: list[str]) -> None:
    assert cli.main(args + ["--quiet"]) == 0


def cli_run(args: list[str], timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    result = subprocess.run(LAUNCHER + args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def ray_tasks_of(driver) -> list:
    """The cluster's worker processes running one of our tasks (Ray names them after it)."""
    found = []
    for child in driver.children(recursive=True):
        try:
            if child.cmdline()[:1] == ["ray::run_task"]:
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def wait_for_chunk_task(driver, proc: subprocess.Popen, folder: Path, limit=300.0):
    """The running task processes, once a chunk task has started writing its segment (its
    temporary file appears beside the output; the scan tasks are done by then)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if any(".seg" in p.name and "partial" in p.name for p in folder.iterdir()):
            tasks = ray_tasks_of(driver)
            if tasks:
                return tasks
        time.sleep(0.02)
    pytest.fail(f"no chunk task started within {limit} s (driver exit code {proc.poll()})")


@pytest.mark.slow  # a local Ray cluster per test: tens of seconds of start-up
@needs_ray
def test_folder_on_two_workers_is_byte_identical(tmp_path, model_file):
    src = tmp_path / "in"
    src.mkdir()
    with Image.open(PACK_ROOT / "assets" / "chelsea.png") as im:
        for i in range(5):
            im.convert("RGB").crop((20 * i, 30, 20 * i + 40, 62)).save(src / f"frame{i:02d}.png")
    common = ["--model", str(model_file), "--device", "cpu", "--tile", "32"]
    single_process([str(src), "-o", str(tmp_path / "single")] + common)
    result = cli_run(["upscale", str(src), "-o", str(tmp_path / "ray"), "--workers", "2", "--quiet"] + common)
    assert "on 2 cpu worker(s), transfer: shared" in result.stdout
    assert "images/s" in result.stdout and "total: 5 images" in result.stdout  # the summary
    names = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert names == [f"frame{i:02d}.png" for i in range(5)]  # and no temporary files
    for name in names:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name


@pytest.mark.slow  # a local Ray cluster per test: tens of seconds of start-up
@needs_ray
@needs_av
def test_video_chunks_on_two_workers_equal_one_process(tmp_path, model_file):
    """Two scene cuts and a long shot split mid-shot (chunks of 10 frames), the source
    streamed through the driver."""
    clip = tmp_path / "clip.mp4"
    n = make_clip(clip)
    common = ["--model", str(model_file), "--device", "cpu", "--lossless"]
    single_process([str(clip), "-o", str(tmp_path / "single.mp4")] + common)
    result = cli_run(
        [
            "upscale",
            str(clip),
            "-o",
            str(tmp_path / "ray.mp4"),
            "--workers",
            "2",
            "--chunk-frames",
            "10",
            "--transfer",
            "stream",
            "--quiet",
        ]
        + common
    )
    assert f"{n} frames, 2 scene cut(s), 5 chunk(s)" in result.stdout, result.stdout
    assert "transfer: stream" in result.stdout and "scanned (by the workers)" in result.stdout
    assert "frames/s" in result.stdout  # the per-worker summary
    assert_same_video(tmp_path / "ray.mp4", tmp_path / "single.mp4", n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "ray.mp4", "single.mp4"]


@pytest.mark.slow  # a local Ray cluster per test: tens of seconds of start-up
@needs_ray
@needs_av
@needs_psutil
def test_killed_worker_is_retried_with_the_same_output(tmp_path, model_file):
    clip = tmp_path / "clip.mp4"
    n = make_clip(clip, h=144, w=176)  # chunk tasks of about a second: time to kill one mid-task
    common = ["--model", str(model_file), "--device", "cpu", "--lossless"]
    single_process([str(clip), "-o", str(tmp_path / "single.mp4")] + common)
    proc = subprocess.Popen(
        LAUNCHER
        + ["upscale", str(clip), "-o", str(tmp_path / "ray.mp4"), "--workers", "2", "--chunk-frames", "10", "--quiet"]
        + common,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # At once: its segment file is open, so it is mid-task (on an idle machine a chunk task
        # can finish within a few tenths of a second).
        victim = wait_for_chunk_task(psutil.Process(proc.pid), proc, tmp_path)[0]
        victim.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert f":{victim.pid} " not in out  # its task was redone by another worker: it finished none
    assert_same_video(tmp_path / "ray.mp4", tmp_path / "single.mp4", n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "ray.mp4", "single.mp4"]


@pytest.mark.slow  # a local Ray cluster per test: tens of seconds of start-up
@needs_ray
@needs_av
@needs_psutil
def test_ctrl_c_cancels_and_leaves_no_partial_output(tmp_path, model_file):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, h=96, w=112)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        LAUNCHER
        + [
            "upscale",
            str(clip),
            "-o",
            str(out_dir / "ray.mp4"),
            "--workers",
            "2",
            "--chunk-frames",
            "10",
            "--quiet",
            "--model",
            str(model_file),
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        driver = psutil.Process(proc.pid)
        tasks = wait_for_chunk_task(driver, proc, out_dir)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # the driver only, as `timeout -s INT` or `kill -INT` does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert list(out_dir.iterdir()) == []  # no output, no segment, no temporary file
    for task in tasks:  # the running tasks were cancelled (their processes are gone)
        assert not task.is_running() or task.status() == psutil.STATUS_ZOMBIE


def test_everything_else_works_without_ray(tmp_path, model_file):
    """With Ray unimportable (runs whether or not Ray is installed): the pack imports, a plain
    upscale runs, --workers says what to install."""
    image = tmp_path / "cat.png"
    with Image.open(PACK_ROOT / "assets" / "chelsea.png") as im:
        im.convert("RGB").crop((0, 0, 32, 32)).save(image)
    code = (
        "import sys; sys.modules['ray'] = None\n"  # import ray -> ImportError, as when not installed
        f"import runpy; sys.argv = [{str(PACK_ROOT / 'paragonsr2.py')!r}] + sys.argv[1:]\n"
        f"runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(image),
            "-o",
            str(tmp_path / "a.png"),
            "--model",
            str(model_file),
            "--device",
            "cpu",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode == 0, plain.stderr
    assert (tmp_path / "a.png").is_file()
    folder = tmp_path / "folder"
    folder.mkdir()
    image.rename(folder / "cat.png")
    refused = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(folder),
            "-o",
            str(tmp_path / "b"),
            "--workers",
            "2",
            "--model",
            str(model_file),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1 and "pip install ray" in refused.stderr, refused.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@needs_ray
def test_joins_an_existing_cluster(tmp_path, model_file):
    """--ray-address: a cluster started with `ray start --head` (its own process group, stopped
    with SIGTERM at the end); the folder output is the single-process one."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.skip(f"the ray command is not beside {sys.executable}")
    port = _free_port()
    log = tmp_path / "head.log"
    with open(log, "w") as sink:  # a file, not a pipe: nobody has to keep reading it
        head = subprocess.Popen(
            [
                str(ray_cli),
                "start",
                "--head",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
                "--block",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        address, deadline = None, time.monotonic() + 120
        while address is None and time.monotonic() < deadline and head.poll() is None:
            time.sleep(0.5)
            for line in log.read_text().splitlines():
                if "ray start --address=" in line:
                    address = line.split("--address=")[1].strip().strip("'\"")
        assert address, "ray start --head did not come up: " + log.read_text()[-2000:]
        src = tmp_path / "in"
        src.mkdir()
        with Image.open(PACK_ROOT / "assets" / "chelsea.png") as im:
            for i in range(3):
                im.convert("RGB").crop((30 * i, 10, 30 * i + 40, 42)).save(src / f"f{i}.png")
        common = ["--model", str(model_file), "--device", "cpu"]
        single_process([str(src), "-o", str(tmp_path / "single")] + common)
        result = cli_run(
            ["upscale", str(src), "-o", str(tmp_path / "ray"), "--ray-address", address, "--quiet"] + common
        )
        assert "transfer: shared" in result.stdout  # every node of the cluster is this machine
        for i in range(3):
            assert (tmp_path / "ray" / f"f{i}.png").read_bytes() == (tmp_path / "single" / f"f{i}.png").read_bytes()
    finally:
        head.terminate()  # ray start --block stops the processes it started (after draining)
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
