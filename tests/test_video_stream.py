"""The streaming video pipeline (engines/video/stream.py) and resume (engines/video/resume.py):
real clips made with PyAV, the bundled demo model, real files and folders."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from packlib import PACK_ROOT, natural_image
from paragonsr2_pack.engines.backends import torch_engine
from paragonsr2_pack.engines.video import chunks, resume, stream, temporal
from paragonsr2_pack.engines.video.options import VideoOptions

av = pytest.importorskip("av", reason="PyAV is not installed (pip install av)")

DEMO = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
H, W, N = 48, 64, 24
SEGMENT = 8
LOSSLESS = VideoOptions(frames_per_chunk=4, codec="h264 lossless", scene_cut_sensitivity=0.6)


class Cancelled(Exception):
    """What a caller's cancel raises (ComfyUI's InterruptProcessingException stands in here)."""


@pytest.fixture(scope="module")
def engine(arch):
    return torch_engine.TorchEngine(arch.load_model(DEMO), device="cpu", precision="fp32")


def make_clip(path: Path, n: int = N, cut: int = 14, rate: int = 24) -> Path:
    """A real H.264 clip: a picture panning 1 px per frame, a scene cut at ``cut``."""
    shots = [natural_image(H, W + n, seed=1), natural_image(H, W + n, seed=2)]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = W, H, "yuv444p"
        s.options = {"crf": "10"}
        for t in range(n):
            big = shots[0] if t < cut else shots[1]
            rgb = (big[0, :, :, t : t + W].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "in.mp4")


def source_frames(path: Path) -> torch.Tensor:
    from paragonsr2_pack.engines.video import container

    with container.open_source(path) as source:
        return torch.stack([f.image for f in source.frames()])


def decoded_rgb(path: Path) -> np.ndarray:
    with av.open(str(path)) as f:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as f:
        return [bytes(p) for p in f.demux(video=0) if p.size]


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def areas(work: Path) -> list[Path]:
    return sorted(p for p in work.iterdir() if p.is_dir()) if work.exists() else []


def manifest_segments(area: Path) -> int:
    try:
        return len(json.loads((area / resume.MANIFEST).read_text())["segments"])
    except (OSError, ValueError):
        return 0


def cancelling(canceller: CancelAfter) -> dict:
    """The keyword arguments that wire a canceller into upscale_file."""
    return {"check_interrupt": canceller, "progress": canceller.progress}


class CancelAfter:
    """check_interrupt that cancels once ``segments`` segments are committed in ``work``.

    Segments are committed by the encode thread, which may trail the network: once the network
    has finished those segments' frames (``progress``, pass it too), the check waits for the
    commit instead of letting the run finish first. Without that the test would race the encoder.
    """

    def __init__(self, work: Path, segments: int, error: type[BaseException] = Cancelled):
        self.work, self.segments, self.error, self.done = work, segments, error, 0

    def progress(self, done: int, total) -> None:
        self.done = done

    def committed(self) -> bool:
        return any(manifest_segments(a) >= self.segments for a in areas(self.work))

    def __call__(self) -> None:
        if self.done >= self.segments * SEGMENT:
            deadline = time.monotonic() + 120
            while not self.committed() and time.monotonic() < deadline:
                time.sleep(0.02)
        if self.committed():
            raise self.error("cancelled by the test")


# -- options ------------------------------------------------------------------------------------
def test_options_validate_round_trip_and_key():
    o = VideoOptions(temporal_strength=0, tile_size=64.0, output_size="factor", output_factor=1.5)
    assert o.temporal_strength == 0.0 and isinstance(o.tile_size, int)
    assert VideoOptions.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    assert o.key() == VideoOptions.from_dict(o.to_dict()).key() and len(o.key()) == 16
    assert o.key() != o.replace(temporal_strength=0.05).key()
    assert VideoOptions().key() == VideoOptions(temporal_strength=0.2, codec="h264").key()
    for bad in (
        {"temporal_strength": 0.99},
        {"scene_cut_sensitivity": -1},
        {"tile_size": 1.5},
        {"output_size": "huge"},
        {"codec": "divx"},
        {"quality": 60},
        {"output_factor": float("nan")},
    ):
        with pytest.raises(ValueError) as info:
            VideoOptions(**bad)
        assert "\n" not in str(info.value) and next(iter(bad)) in str(info.value)
    with pytest.raises(ValueError, match="unknown video option"):
        VideoOptions.from_dict({"temporal_strenght": 0.3})
    assert o.output_dims(48, 64, 2) == (72, 96) and VideoOptions().output_dims(48, 64, 2) is None


def test_warm_up_equals_the_runners_state(engine):
    """The one warm-up function gives, bit for bit, the state upscale_video leaves."""
    frames = source_frames_of_tensor()
    options = VideoOptions(temporal_strength=0.4, motion_adaptive=True)
    _, expected = temporal.upscale_video(engine, frames, **options.upscale_kwargs(), model_key="k")
    got = chunks.warm_up(frames, options, None, "k")
    assert got is not None and got.frames_seen == expected.frames_seen
    for name in ("blended", "last_thumb", "last_frame"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    assert chunks.warm_up(frames[:0], options, got, "k") is got


def source_frames_of_tensor() -> torch.Tensor:
    big = natural_image(H, W + 12, seed=3)
    return torch.cat([big[..., t : t + W] for t in range(12)]).permute(0, 2, 3, 1).contiguous()


# -- the stream, in memory ----------------------------------------------------------------------
@dataclass
class MemFrame:
    index: int
    pts: int
    image: torch.Tensor


@pytest.mark.parametrize("split_every", [0, 8])
def test_stream_equals_upscale_video(engine, split_every):
    """Decode thread -> network -> encode thread gives exactly upscale_video's frames and state."""
    frames = source_frames_of_tensor()
    options = VideoOptions(frames_per_chunk=4, temporal_strength=0.3)
    expected, expected_state = temporal.upscale_video(engine, frames, **options.upscale_kwargs())
    got, states, seen = [], [], []
    done, state = stream.upscale_stream(
        engine,
        (MemFrame(i, 100 + i, frames[i]) for i in range(frames.shape[0])),
        lambda item: (got.append(item.images), states.append((item.first, item.pts))),
        options,
        total=frames.shape[0],
        split_every=split_every,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert done == 12 and torch.equal(torch.cat(got), expected)
    assert torch.equal(state.blended, expected_state.blended) and state.frames_seen == 12
    assert [first for first, _ in states] == [0, 4, 8]
    assert states[0][1] == [100, 101, 102, 103]
    assert seen[0] == (0, 12) and seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_stream_chunks_end_at_segment_starts():
    frames = [MemFrame(i, i, torch.zeros(2, 2, 3)) for i in range(11)]
    sizes = [(c.first, c.images.shape[0]) for c in stream.chunk_frames(iter(frames), 4, split_every=5, first_index=3)]
    assert sizes == [(3, 2), (5, 4), (9, 1), (10, 4)]


def test_stream_errors_and_cancel_stop_every_stage(engine):
    frames = source_frames_of_tensor()
    options = VideoOptions(frames_per_chunk=2)

    def broken_source():
        yield MemFrame(0, 0, frames[0])
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="went away"):
        stream.upscale_stream(engine, broken_source(), lambda item: None, options)

    def full_sink(item):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        stream.upscale_stream(engine, (MemFrame(i, i, frames[i]) for i in range(12)), full_sink, options)
    calls = []

    def cancel():
        calls.append(1)
        if len(calls) > 3:
            raise Cancelled

    written = []
    with pytest.raises(Cancelled):
        stream.upscale_stream(
            engine, (MemFrame(i, i, frames[i]) for i in range(12)), written.append, options, check_interrupt=cancel
        )
    assert len(written) < 6
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("paragonsr2-")]


# -- files, segments and resume -----------------------------------------------------------------
def expected_output(engine, clip: Path, options: VideoOptions) -> np.ndarray:
    out, _ = temporal.upscale_video(
        engine,
        source_frames(clip),
        **options.upscale_kwargs(),
        output_size=options.output_dims(H, W, 2),
    )
    return to_uint8(out)


def test_file_lossless_equals_upscale_video(engine, clip, tmp_path):
    dst = tmp_path / "out.mp4"
    result = stream.upscale_file(engine, clip, dst, LOSSLESS, segment_frames=SEGMENT)
    assert result.frames == N and result.resumed_from == 0 and result.ended_early is None
    assert np.array_equal(decoded_rgb(dst), expected_output(engine, clip, LOSSLESS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no work area, no temp files


def test_interrupt_then_resume_gives_the_uninterrupted_output(engine, clip, tmp_path):
    work, dst = tmp_path / "work", tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        stream.upscale_file(
            engine, clip, dst, LOSSLESS, work_dir=work, segment_frames=SEGMENT, **cancelling(CancelAfter(work, 2))
        )
    assert not dst.exists() and [p.name for p in tmp_path.iterdir() if p.name != "work"] == []
    (area,) = areas(work)
    kept = manifest_segments(area)
    assert kept >= 2
    assert not [p for p in area.iterdir() if ".writing" in p.name]  # the open segment was dropped
    seen = []
    result = stream.upscale_file(
        engine, clip, dst, LOSSLESS, work_dir=work, segment_frames=SEGMENT, progress=lambda d, t: seen.append(d)
    )
    assert result.resumed_from == kept * SEGMENT and result.frames == N
    assert seen[0] == kept * SEGMENT and seen[-1] == N
    assert np.array_equal(decoded_rgb(dst), expected_output(engine, clip, LOSSLESS))
    assert not work.exists()  # finished: the work area is gone, and the empty work folder


def test_lossy_resume_gives_identical_segments(engine, clip, tmp_path):
    """x264 is deterministic for the same frames and settings (threads fixed): a resumed run's
    packets equal an uninterrupted run's, byte for byte."""
    options = VideoOptions(frames_per_chunk=4, codec="h264", quality=20)
    whole = tmp_path / "whole.mp4"
    stream.upscale_file(engine, clip, whole, options, segment_frames=SEGMENT)
    work, dst = tmp_path / "work", tmp_path / "resumed.mp4"
    with pytest.raises(Cancelled):
        stream.upscale_file(
            engine, clip, dst, options, work_dir=work, segment_frames=SEGMENT, **cancelling(CancelAfter(work, 1))
        )
    result = stream.upscale_file(engine, clip, dst, options, work_dir=work, segment_frames=SEGMENT)
    assert result.resumed_from > 0
    assert video_packets(dst) == video_packets(whole)


def test_damaged_segment_is_redone(engine, clip, tmp_path):
    work, dst = tmp_path / "work", tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C (and SIGTERM made an exception) acts the same
        stream.upscale_file(
            engine,
            clip,
            dst,
            LOSSLESS,
            work_dir=work,
            segment_frames=SEGMENT,
            **cancelling(CancelAfter(work, 2, KeyboardInterrupt)),
        )
    assert not dst.exists()
    (area,) = areas(work)
    second = area / "seg-00001.mp4"
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte, as a bad sector or a torn write leaves
    second.write_bytes(bytes(data))
    (area / "seg-00009.writing.mp4").write_bytes(b"half a segment")  # litter of a SIGKILL
    result = stream.upscale_file(engine, clip, dst, LOSSLESS, work_dir=work, segment_frames=SEGMENT)
    assert result.resumed_from == SEGMENT  # segment 0 kept, 1 and after redone
    assert np.array_equal(decoded_rgb(dst), expected_output(engine, clip, LOSSLESS))


def test_second_run_on_the_same_work_refuses(engine, clip, tmp_path):
    work = tmp_path / "work"
    refusals = []

    def second_run():
        if not refusals:
            try:
                stream.upscale_file(engine, clip, tmp_path / "b.mp4", LOSSLESS, work_dir=work, segment_frames=SEGMENT)
            except resume.WorkAreaBusy as exc:
                refusals.append(str(exc))

    stream.upscale_file(
        engine, clip, tmp_path / "a.mp4", LOSSLESS, work_dir=work, segment_frames=SEGMENT, check_interrupt=second_run
    )
    assert len(refusals) == 1 and "\n" not in refusals[0] and "another run" in refusals[0]
    assert not (tmp_path / "b.mp4").exists() and (tmp_path / "a.mp4").exists()


def test_changed_option_or_input_starts_fresh_and_stale_areas_go(engine, clip, tmp_path):
    work, dst = tmp_path / "work", tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        stream.upscale_file(
            engine, clip, dst, LOSSLESS, work_dir=work, segment_frames=SEGMENT, **cancelling(CancelAfter(work, 1))
        )
    (old,) = areas(work)
    other = LOSSLESS.replace(temporal_strength=0.3)
    result = stream.upscale_file(engine, clip, dst, other, work_dir=work, segment_frames=SEGMENT)
    assert result.resumed_from == 0 and areas(work) == [old]  # kept: not stale yet
    changed = make_clip(tmp_path / "in2.mp4", cut=10)
    result = stream.upscale_file(
        engine, changed, tmp_path / "out2.mp4", LOSSLESS, work_dir=work, segment_frames=SEGMENT, stale_after_s=0
    )
    assert result.resumed_from == 0 and areas(work) == []  # the stale area was cleaned on start


def test_output_size_option(engine, clip, tmp_path):
    options = LOSSLESS.replace(output_size="factor", output_factor=1.5)
    dst = tmp_path / "out.mp4"
    stream.upscale_file(engine, clip, dst, options, segment_frames=SEGMENT)
    got = decoded_rgb(dst)
    assert got.shape == (N, 72, 96, 3)
    assert np.array_equal(got, expected_output(engine, clip, options))


def test_state_file_round_trip_is_exact():
    state = temporal.TemporalState(
        signature=("model x2", 3, 5),
        blended=torch.rand(1, 3, 3, 5),
        last_thumb=torch.rand(4, 32, 32),
        last_frame=torch.rand(1, 3, 3, 5),
        frames_seen=17,
    )
    back = resume.state_from_bytes(resume.state_to_bytes(state))
    assert back.signature == state.signature and back.frames_seen == 17
    assert all(torch.equal(getattr(back, n), getattr(state, n)) for n in ("blended", "last_thumb", "last_frame"))


_DISK_FULL_SCRIPT = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import packlib
packlib.import_pack()
import subprocess
import test_video_stream as T
from paragonsr2_pack import paragonsr2_arch as arch
from paragonsr2_pack.engines.backends import torch_engine
from paragonsr2_pack.engines.video import stream
disk, clip = Path(sys.argv[2]), Path(sys.argv[3])
engine = torch_engine.TorchEngine(arch.load_model(T.DEMO), device="cpu", precision="fp32")
work, dst = disk / "work", disk / "out.mp4"
try:
    stream.upscale_file(engine, clip, dst, T.LOSSLESS, work_dir=work, segment_frames=T.SEGMENT)
    raise SystemExit("no error on a full disk")
except stream.DiskFull as exc:
    print("ERROR", str(exc))
(area,) = T.areas(work)
kept = T.manifest_segments(area)
print("KEPT", kept, "DST", dst.exists(), "LITTER", sorted(p.name for p in disk.iterdir()))
subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # space freed
result = stream.upscale_file(engine, clip, dst, T.LOSSLESS, work_dir=work, segment_frames=T.SEGMENT)
print("RESUMED", result.resumed_from, result.frames, dst.exists(), T.areas(work))
"""


def test_full_disk_says_so_keeps_the_work_and_resumes(clip, tmp_path):
    """A real full disk: a 400 KiB tmpfs in a private mount namespace (unshare, no root)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare with user namespaces to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'mount -t tmpfs -o size=400k tmpfs "{disk}" && exec "{sys.executable}" -c "$0" "$@"'
    run = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, _DISK_FULL_SCRIPT, str(PACK_ROOT / "tests"), str(disk), str(clip)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    print(run.stdout)
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert lines["ERROR"].startswith("the disk is full") and "run the same job again" in lines["ERROR"]
    kept = int(lines["KEPT"].split()[0])
    assert kept >= 1 and "DST False" in lines["KEPT"] and "LITTER ['work']" in lines["KEPT"]
    resumed, frames, exists, left = lines["RESUMED"].split(" ", 3)
    assert int(resumed) == kept * SEGMENT and int(frames) == N and exists == "True" and left == "[]"


_HOLD_LOCK_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import packlib
packlib.import_pack()
from paragonsr2_pack.engines.video import resume
area = resume.WorkArea.open(sys.argv[2], "k" * 24)
print("held", flush=True)
time.sleep(120)
"""


def test_lock_of_a_killed_process_is_not_stale_forever(tmp_path):
    """Another process holds the area: refused with one line naming it; SIGKILL that process
    (no cleanup runs) and the area opens at once: the kernel dropped the lock."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK_SCRIPT, str(PACK_ROOT / "tests"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(resume.WorkAreaBusy, match=f"process {holder.pid}"):
            resume.WorkArea.open(tmp_path, "k" * 24)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert (tmp_path / ("k" * 24) / resume.LOCK).exists()  # the killed run's lock file is still there
    with resume.WorkArea.open(tmp_path, "k" * 24) as area:
        assert area.segments == []
