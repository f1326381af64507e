"""ParagonSR2 Upscale Video (streaming), in process (no ComfyUI: the standalone io stand-in).

Real clips written with PyAV, the bundled realtime x2 demo model: the node's MP4 keeps the frame
count, every frame's timestamp and the audio; its frames equal the Video Upscale node's on the
same decoded frames (lossless codec); a VIDEO made of frames (Create Video) works; a trimmed
VIDEO is honoured; Cancel then rerun continues from the kept segment and gives the
uninterrupted result; a missing encoder or a damaged file each give one clear line.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from packlib import video_facts

av = pytest.importorskip("av", reason="the streaming video node needs PyAV (pip install av)")

from paragonsr2_pack.engines.video import container  # noqa: E402
from paragonsr2_pack.nodes import comfy_bridge, comfy_io  # noqa: E402
from paragonsr2_pack.nodes import stream_video_nodes as svn  # noqa: E402
from paragonsr2_pack.nodes.shared import load_model_handle  # noqa: E402
from paragonsr2_pack.nodes.video_nodes import ParagonSR2VideoUpscale  # noqa: E402

NODE = svn.ParagonSR2UpscaleVideoStreaming
DEMO = "(bundled) ParagonSR2_realtime_x2_demo.safetensors"
SAMPLE_RATE = 44_100


def write_clip(path: Path, frames: int = 24, size=(48, 32), fps=24, audio: bool = True) -> Path:
    """An H.264 + AAC MP4: a moving gradient with a bar (so frames differ) and a 440 Hz tone.
    The index goes first (faststart, as downloads have it), so a cut-off file still opens."""
    w, h = size
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio else None
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (np.arange(w) * 5 + i * 3) % 256
            img[..., 1] = (np.arange(h)[:, None] * 7) % 256
            img[:, (i * 2) % w : (i * 2) % w + 4, 2] = 255
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = round(SAMPLE_RATE * frames / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)
            for start in range(0, samples, 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024].copy(), format="flt", layout="mono")
                frame.sample_rate, frame.pts = SAMPLE_RATE, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """ComfyUI's output (resume work areas) and temp (results) folders, private to the test."""
    monkeypatch.setenv("PARAGONSR2_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("PARAGONSR2_TEMP_DIR", str(tmp_path / "temp"))
    return tmp_path


@pytest.fixture(scope="module")
def model():
    return load_model_handle(DEMO)


def run(model, video, **inputs) -> Path:
    out = NODE.execute(model=model, video=video, **inputs)
    result = out.args[0]
    assert isinstance(result, comfy_io.VideoFromFile)
    return Path(result.get_stream_source())


def test_schema_has_video_upscales_choices_and_mp4_codecs():
    ids = [i.id for i in comfy_io.node_inputs(NODE)]
    video_ids = [i.id for i in comfy_io.node_inputs(ParagonSR2VideoUpscale)]
    shared = ["temporal_strength", "scene_cut_sensitivity", "motion_adaptive", "tile_size", "frames_per_chunk"]
    shared += ["device", "output_size", "output_factor", "output_long_side"]
    for name in shared:
        mine = next(i for i in comfy_io.node_inputs(NODE) if i.id == name).as_dict()
        theirs = next(i for i in comfy_io.node_inputs(ParagonSR2VideoUpscale) if i.id == name).as_dict()
        assert mine == theirs, name
    assert set(shared) <= set(video_ids)
    assert ids[:2] == ["model", "video"] and "codec" in ids and "quality" in ids
    codec = next(i for i in comfy_io.node_inputs(NODE) if i.id == "codec")
    assert codec.options[:3] == ["h264", "h265", "h264 lossless"] and "ffv1" not in codec.options  # MP4 only
    assert "cannot preview" in codec.tooltip
    assert "ParagonSR2UpscaleVideoStreaming" in sys_modules_mappings()


def sys_modules_mappings() -> dict:
    from paragonsr2_pack import nodes

    return nodes.NODE_CLASS_MAPPINGS


def test_file_video_keeps_frames_timestamps_audio_and_equals_video_upscale(folders, model):
    src = write_clip(folders / "in.mp4", frames=20)
    out = run(model, comfy_io.VideoFromFile(str(src)), codec="h264 lossless")
    assert out.parent == folders / "temp" / svn.RESULT_SUBFOLDER and out.suffix == ".mp4"
    got, source = video_facts(out), video_facts(src)
    assert got["codec"] == "h264" and got["size"] == (96, 64)
    assert len(got["times"]) == 20
    np.testing.assert_allclose(got["times"], source["times"], atol=1e-3)
    assert got["audio"] is not None and abs(got["audio"] - source["audio"]) < 0.05, (got["audio"], source["audio"])
    # The same frames, decoded as core decodes them, through the Video Upscale node.
    with container.open_source(src) as reader:
        frames = torch.stack([f.image for f in reader.frames()])
    expected = ParagonSR2VideoUpscale.execute(model=model, frames=frames).args[0]
    expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(got["frames"].astype(int) - expected.astype(int)).max() <= 1
    assert not (folders / "output" / svn.WORK_FOLDER).exists() or not any(
        (folders / "output" / svn.WORK_FOLDER).iterdir()
    ), "the finished run left its work area behind"


def test_video_made_of_frames_is_read_from_its_components(folders, model, caplog):
    src = write_clip(folders / "in.mp4", frames=12)
    with container.open_source(src) as reader:
        images = torch.stack([f.image for f in reader.frames()])
    tone = torch.sin(torch.arange(SAMPLE_RATE) / SAMPLE_RATE * 2 * torch.pi * 440)[None, None] * 0.3
    components = SimpleNamespace(images=images, audio={"waveform": tone, "sample_rate": SAMPLE_RATE}, frame_rate=24)

    class FramesVideo:  # what Create Video gives: no file, only components
        def get_components(self):
            return components

    with caplog.at_level(logging.INFO, logger="ParagonSR2"):
        out = run(model, FramesVideo(), codec="h264 lossless")
    got = video_facts(out)
    assert len(got["times"]) == 12 and got["size"] == (96, 64)
    np.testing.assert_allclose(got["times"], np.arange(12) / 24, atol=1e-3)
    assert got["audio"] is not None and abs(got["audio"] - 12 / 24) < 0.05  # cut to the video, as core does
    expected = ParagonSR2VideoUpscale.execute(model=model, frames=images).args[0]
    expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(got["frames"].astype(int) - expected.astype(int)).max() <= 1
    assert images.shape[0] == 12  # the caller's tensor is left as it was


def test_video_in_an_in_memory_file_is_read_like_a_file(folders, model):
    src = write_clip(folders / "in.mp4", frames=8)
    got = video_facts(run(model, comfy_io.VideoFromFile(BytesIO(src.read_bytes()))))
    assert len(got["times"]) == 8 and got["audio"] is not None
    assert not list((folders / "temp" / svn.RESULT_SUBFOLDER).glob(".input-*")), "the spooled copy was left behind"


def test_trimmed_video_is_honoured(folders, model):
    src = write_clip(folders / "in.mp4", frames=24)  # 1 s at 24 fps
    trimmed = comfy_io.VideoFromFile(str(src), start_time=0.25, duration=0.5)
    got = video_facts(run(model, trimmed))
    assert len(got["times"]) == 12  # frames with 0.25 <= t < 0.75
    np.testing.assert_allclose(got["times"], np.arange(12) / 24, atol=1e-3)
    assert got["audio"] is not None and abs(got["audio"] - 0.5) < 0.06, got["audio"]


class Cancelled(Exception):
    """Stands for ComfyUI's InterruptProcessingException: what check_interrupt raises on Cancel."""


def test_cancel_then_rerun_resumes_and_equals_an_uninterrupted_run(folders, model, monkeypatch, caplog):
    frames = svn_segment_frames() + 40  # one full segment, then a short one
    src = write_clip(folders / "long.mp4", frames=frames, size=(32, 32))
    work = folders / "output" / svn.WORK_FOLDER
    fired = []

    def cancel_after_first_segment():  # the user presses Cancel once a segment is kept
        if not fired and list(work.glob("*/seg-00000.mp4")):
            fired.append(True)
            raise Cancelled

    monkeypatch.setattr(comfy_bridge, "check_interrupt", cancel_after_first_segment)
    video = comfy_io.VideoFromFile(str(src))
    with pytest.raises(Cancelled):
        run(model, video, codec="h264 lossless")
    assert fired and not list((folders / "temp" / svn.RESULT_SUBFOLDER).glob("*.mp4")), "nothing under the result name"
    monkeypatch.setattr(comfy_bridge, "check_interrupt", lambda: None)
    with caplog.at_level(logging.INFO, logger="ParagonSR2"):
        resumed = video_facts(run(model, video, codec="h264 lossless"))
    assert f"at frame {svn_segment_frames()}" in caplog.text and "resuming" in caplog.text
    assert not work.exists() or not any(work.iterdir()), "the finished run left its work area behind"
    whole = video_facts(run(model, video, codec="h264 lossless"))  # a fresh, uninterrupted run
    assert len(resumed["times"]) == frames
    np.testing.assert_array_equal(resumed["frames"], whole["frames"])
    np.testing.assert_allclose(resumed["times"], whole["times"], atol=1e-6)


def svn_segment_frames() -> int:
    from paragonsr2_pack.engines.video import stream

    return stream.DEFAULT_SEGMENT_FRAMES


def test_damaged_input_keeps_what_decodes_and_says_where_it_ended(folders, model, caplog):
    src = write_clip(folders / "in.mp4", frames=48, size=(64, 48), audio=False)
    data = src.read_bytes()
    (folders / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # cut off: a failed download
    with caplog.at_level(logging.INFO, logger="ParagonSR2"):
        out = run(model, comfy_io.VideoFromFile(str(folders / "cut.mp4")))
    got = video_facts(out)
    assert 0 < len(got["times"]) < 48
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and "decoding stopped" in warning[0].getMessage() and "cut.mp4" in warning[0].getMessage()


def test_missing_encoder_and_bad_model_are_one_line(folders, model, monkeypatch):
    from paragonsr2_pack.engines.video import encode

    src = write_clip(folders / "in.mp4", frames=4)
    real = encode.encoder_choices

    def without_x265():
        return [
            c if c.name != "h265" else c.__class__(**{**c.__dict__, "available": False, "why_not": "no libx265"})
            for c in real()
        ]

    monkeypatch.setattr(encode, "encoder_choices", without_x265)
    with pytest.raises(ValueError, match=r"h265.*no libx265"):
        run(model, comfy_io.VideoFromFile(str(src)), codec="h265")
    with pytest.raises(ValueError, match="must come from ParagonSR2 Loader"):
        run("not a model", comfy_io.VideoFromFile(str(src)))
    with pytest.raises(ValueError, match="no such file"):
        run(model, comfy_io.VideoFromFile(str(folders / "missing.mp4")))
