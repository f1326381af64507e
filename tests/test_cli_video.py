"""The command line's video path on real files, real subprocesses and real signals: resume after
SIGTERM / Ctrl-C, variable frame rate, rotation, 10-bit, truncated input, output size.

Clips are written here with PyAV; the model is the bundled demo (realtime x2). The command line
runs the pack's streaming pipeline (engines/video/stream.py) in resumable segments kept in
``.<output>.paragonsr2-work/`` beside the output.
"""

from __future__ import annotations

import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")

from packlib import PACK_ROOT, has_encoder, launch_cli  # noqa: E402
from paragonsr2_pack import cli  # noqa: E402
from paragonsr2_pack.engines.video import container  # noqa: E402

DEMO_MODEL = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
TB = Fraction(1, 15360)
# 30 fps with dropped frames and one long hold, as a phone clip has
VFR_PTS = [0, 512, 1024, 2048, 2560, 3584, 4096, 4608, 6144, 6656, 7168, 8192, 8704, 9216]
SEGMENT = 8  # frames per resumable segment in the resume tests


def picture(i: int, w: int, h: int) -> np.ndarray:
    """A moving, asymmetric picture (frame order and orientation are visible in it)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 3 + i * 5) % 256, (y * 5) % 256, (x + y + i * 7) % 256], axis=-1).astype(np.uint8)
    img[: h // 4, : w // 4] = 255  # a white top-left corner
    return img


def write_clip(
    path: Path,
    *,
    frames: int = 12,
    size=(64, 48),
    pts=None,
    codec="libx264",
    pix_fmt="yuv420p",
    rotation=0,
    deep=False,
) -> Path:
    """``frames`` frames (or one per ``pts``, in TB units: a variable frame rate)."""
    w, h = size
    times = pts if pts is not None else [i * 512 for i in range(frames)]
    with av.open(str(path), mode="w") as out:
        video = out.add_stream(codec, rate=30)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.time_base = video.codec_context.time_base = TB
        if codec == "libx265":
            video.options = {"x265-params": "log-level=error"}
        if rotation:
            video.set_display_rotation(rotation)
        for i, t in enumerate(times):
            img = picture(i, w, h)
            if deep:  # 16-bit values that only a 10-bit file keeps apart
                frame = av.VideoFrame.from_ndarray(img.astype(np.uint16) * 257 + 64 * (i % 4), format="rgb48le")
            else:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, TB
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return path


def decoded(path: Path) -> tuple[np.ndarray, list[float]]:
    """Every frame (rgb24) and its presentation time in seconds."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24") for f in frames]), [float(f.time) for f in frames]


def run_cli(*args) -> int:
    return cli.main([str(a) for a in args])


def common(*extra):
    return ["--model", DEMO_MODEL, "--device", "cpu", "--quiet", *extra]


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# -- resume after a real signal ---------------------------------------------------------------------
RESUME_ARGS = ("--lossless", "--segment-frames", str(SEGMENT), "--frames-per-chunk", "4")


@pytest.fixture(scope="module")
def resume_case(tmp_path_factory):
    """A 60-frame clip and its uninterrupted (lossless) result."""
    folder = tmp_path_factory.mktemp("resume")
    clip = write_clip(folder / "clip.mp4", frames=60, size=(160, 120))
    reference = folder / "reference.mp4"
    assert run_cli(clip, "-o", reference, *common(*RESUME_ARGS)) == 0
    assert visible(folder) == ["clip.mp4", "reference.mp4"] and not list(folder.glob(".*"))  # work area removed
    return clip, reference


def _first_segment_written(work: Path, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll the work area until a finished segment is in it (committed: renamed into place)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if work.is_dir() and any(work.glob("*/seg-00000.mp4")):
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_interrupted_video_keeps_its_segments_and_the_rerun_resumes_to_the_same_frames(
    tmp_path, resume_case, signum, code, capsys
):
    clip, reference = resume_case
    out = tmp_path / "out" / "clip_x2.mp4"
    work = out.parent / ".clip_x2.mp4.paragonsr2-work"
    proc = launch_cli([clip, "-o", out, *common(*RESUME_ARGS)], tmp_path)
    try:
        started = _first_segment_written(work, proc)
        assert started, proc.communicate(timeout=60)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a very fast machine)")
    assert proc.returncode == code, err
    assert not out.exists() and visible(out.parent) == []  # nothing under the output name
    assert "no partial output was left" in err and "finished segments are kept in" in err
    assert any(work.glob("*/seg-00000.mp4"))

    assert run_cli(clip, "-o", out, *common(*RESUME_ARGS)) == 0
    said = capsys.readouterr().out
    line = next(x for x in said.splitlines() if x.startswith("resuming at frame "))
    resumed_at = int(line.split()[3])
    assert resumed_at > 0 and resumed_at % SEGMENT == 0 and "of 60" in line, said
    got, want = decoded(out)[0], decoded(reference)[0]
    assert got.shape == want.shape and np.array_equal(got, want)  # identical frames (lossless)
    assert visible(out.parent) == ["clip_x2.mp4"] and not work.exists()  # the work area is gone


def test_a_changed_option_starts_fresh_instead_of_resuming(tmp_path, resume_case, capsys):
    """Finished segments of another run (another temporal strength) are not reused."""
    clip, _ = resume_case
    out = tmp_path / "clip_x2.mp4"
    proc = launch_cli([clip, "-o", out, *common(*RESUME_ARGS)], tmp_path)
    try:
        assert _first_segment_written(tmp_path / ".clip_x2.mp4.paragonsr2-work", proc), proc.communicate(timeout=60)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a very fast machine)")
    assert run_cli(clip, "-o", out, *common(*RESUME_ARGS, "--temporal-strength", "0.4")) == 0
    assert "resuming" not in capsys.readouterr().out


def test_a_second_run_of_the_same_video_is_refused_while_the_first_writes(tmp_path, resume_case, capsys):
    """Two runs with the same key never write one work area at once (a lock the kernel drops
    when its process dies)."""
    clip, _ = resume_case
    out = tmp_path / "clip_x2.mp4"
    proc = launch_cli([clip, "-o", out, *common(*RESUME_ARGS)], tmp_path)
    try:
        assert _first_segment_written(tmp_path / ".clip_x2.mp4.paragonsr2-work", proc), proc.communicate(timeout=60)
        code = run_cli(clip, "-o", out, *common(*RESUME_ARGS))
        err = capsys.readouterr().err
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    if code == 0:
        pytest.skip("the first run finished before the second started (a very fast machine)")
    assert code == 1 and "another run (process" in err and "is writing the same video" in err, err


# -- true to the source -----------------------------------------------------------------------------
def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    src = write_clip(tmp_path / "phone.mp4", pts=VFR_PTS)
    out = tmp_path / "phone_x2.mp4"
    assert run_cli(src, "-o", out, *common()) == 0
    _, want = decoded(src)
    frames, got = decoded(out)
    assert frames.shape == (len(VFR_PTS), 96, 128, 3)
    first = want[0]
    assert np.allclose(np.array(got) - got[0], np.array(want) - first, atol=1e-3), (got, want)


def test_rotation_is_kept_upright(tmp_path):
    """A clip stored 64x48 with a 90-degree display rotation shows 48x64: the output is 96x128
    upright pixels (no tag to misread), and its content is the upscaled upright source."""
    src = write_clip(tmp_path / "rotated.mp4", rotation=90, frames=6)
    out = tmp_path / "rotated_x2.mp4"
    assert run_cli(src, "-o", out, *common("--lossless")) == 0
    assert container.probe(out).rotation == 0
    frames, _ = decoded(out)
    assert frames.shape == (6, 128, 96, 3)
    with container.open_source(src) as source:
        upright = np.stack([f.image.numpy() for f in source.frames()])  # rotation applied, as core does
    assert upright.shape[1:3] == (64, 48)
    small = frames.reshape(6, 64, 2, 48, 2, 3).mean(axis=(2, 4)) / 255.0
    right = np.abs(small - upright).mean()
    wrong = np.abs(small - upright[:, ::-1, ::-1]).mean()  # the same pixels turned 180 degrees
    assert right < 0.05 and right < wrong / 3, (right, wrong)


@pytest.mark.skipif(not has_encoder("libx265"), reason="this PyAV build has no libx265 to write a 10-bit HEVC input")
def test_ten_bit_input_gives_ten_bit_output(tmp_path, capsys):
    src = write_clip(tmp_path / "deep.mkv", codec="libx265", pix_fmt="yuv420p10le", deep=True, frames=6)
    assert container.probe(src).bit_depth == 10
    out = tmp_path / "deep_x2.mkv"
    assert run_cli(src, "-o", out, *common()) == 0
    info = container.probe(out)
    assert info.bit_depth == 10 and "10" in info.pix_fmt, info.pix_fmt
    assert "depth reduced" not in capsys.readouterr().err


def test_truncated_input_writes_what_decodes_says_where_it_ended_and_fails_unless_accepted(tmp_path, capsys):
    full = write_clip(tmp_path / "full.mkv", frames=60, size=(96, 72))
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])  # a download that stopped half way
    out = tmp_path / "cut_x2.mkv"
    assert run_cli(cut, "-o", out, *common()) == 1
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "decoding stopped" in lines[0] and "--accept-partial" in lines[0], err
    n = decoded(out)[0].shape[0]
    assert 0 < n < 60  # what decoded is written
    assert run_cli(cut, "-o", out, "--overwrite", "--accept-partial", *common()) == 0
    assert "decoding stopped" in capsys.readouterr().err
    assert decoded(out)[0].shape[0] == n


# -- output size ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option,expected",
    [(("--factor", "1.5"), (72, 96)), (("--long-side", "100"), (75, 100)), ((), (96, 128))],
    ids=["factor", "long-side", "model-factor"],
)
def test_output_size_options_for_videos(tmp_path, option, expected):
    src = write_clip(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "clip_x.mp4"
    assert run_cli(src, "-o", out, *common("--lossless", *option)) == 0  # RGB: odd sizes stay as asked
    assert decoded(out)[0].shape == (4, *expected, 3)


@pytest.mark.parametrize(
    "option,expected", [(("--factor", "1.5"), (90, 60)), (("--long-side", "200"), (200, 133))], ids=["factor", "long"]
)
def test_output_size_options_for_images(tmp_path, option, expected):
    src = tmp_path / "cat.png"
    with Image.open(PACK_ROOT / "assets" / "chelsea.png") as im:
        im.convert("RGB").crop((0, 0, 60, 40)).save(src)
    out = tmp_path / "cat_x.png"
    assert run_cli(src, "-o", out, *common(*option)) == 0
    with Image.open(out) as im:
        assert im.size == expected


def test_factor_and_long_side_together_are_refused(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    with pytest.raises(SystemExit) as exc:
        run_cli(src, "--factor", "2", "--long-side", "100", "--quiet")
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_codec_the_container_cannot_hold_is_refused_before_work(tmp_path, capsys):
    src = write_clip(tmp_path / "clip.mp4", frames=2)
    missing_model = tmp_path / "no_model.safetensors"  # loading it would be exit 1, not 2
    assert run_cli(src, "-o", tmp_path / "x.mp4", "--codec", "ffv1", "--model", missing_model, "--quiet") == 2
    assert "a .mp4 file cannot hold it" in capsys.readouterr().err
    assert run_cli(src, "-o", tmp_path / "x.mp4", "--codec", "nope", "--model", missing_model, "--quiet") == 2
    assert "unknown video codec 'nope'" in capsys.readouterr().err
