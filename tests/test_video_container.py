"""The video container layer (engines/video/container.py, encode.py, remux.py) on real files
that each test writes with PyAV: timestamps, rotation, depth, colour, damage, audio and
subtitles, odd sizes, lossless round trips, and equality with ComfyUI core's decoder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")

from packlib import has_encoder  # noqa: E402
from paragonsr2_pack.engines.video import container, encode, remux  # noqa: E402

W, H = 64, 48
TB = Fraction(1, 15360)
# A variable frame rate: 30 fps with dropped frames and one long hold (phone-clip style).
VFR_PTS = [0, 512, 1024, 2048, 2560, 3584, 4096, 4608, 6144, 6656, 7168, 8192, 8704, 9216]


def picture(i: int, w: int = W, h: int = H) -> np.ndarray:
    """An asymmetric, moving test picture (so rotation and frame order are visible)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(1, w - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(1, h - 1)).astype(np.uint8)
    img[..., 2] = (i * 17) % 256
    img[: h // 4, : w // 4] = (255, 255, 255)  # a white top-left corner
    return img


def write_clip(
    path: Path,
    *,
    pts=VFR_PTS,
    size=(W, H),
    codec="libx264",
    pix_fmt="yuv420p",
    time_base=TB,
    rate=Fraction(30),
    rotation=0,
    color=None,
    audio=False,
    options=None,
    frame_fmt="rgb24",
    container_options=None,
) -> Path:
    w, h = size
    with av.open(str(path), mode="w", options=container_options or {}) as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if options:
            video.options = options
        if color:
            for key, value in color.items():
                setattr(video.codec_context, key, value)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000, layout="mono")
        for i, p in enumerate(pts):
            img = picture(i, w, h)
            if frame_fmt == "rgba":
                img = np.concatenate([img, np.full((h, w, 1), 128 + i, np.uint8)], axis=-1)
            elif frame_fmt == "rgb48le":
                img = img.astype(np.uint16) * 257 + (i * 64)  # 16-bit values a 10-bit file keeps apart
            frame = av.VideoFrame.from_ndarray(img, format=frame_fmt)
            if color:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=color.get("colorspace"))
                for key, value in color.items():
                    setattr(frame, key, value)
            frame.pts, frame.time_base = p, time_base
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            t = np.arange(int(48000 * (pts[-1] + 512) * time_base)) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                block = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono"
                )
                block.sample_rate, block.pts = 48000, start
                for packet in sound.encode(block):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def decode_all(path: Path, **kw):
    with container.open_source(path, **kw) as src:
        frames = list(src.frames())
        return frames, src.ended_early, src.info


def encode_frames(path: Path, frames, info, codec="h264", quality=16, size=None) -> encode.VideoWriter:
    h, w = frames[0].image.shape[:2]
    writer = encode.VideoWriter(
        path,
        width=w,
        height=h,
        codec=codec,
        quality=quality,
        source=info,
        time_base=info.time_base,
        rate=info.rate,
        threads=1,
    )
    for f in frames:
        writer.write(f.image, f.pts)
    writer.close()
    return writer


def times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [Fraction(f.pts) * stream.time_base for f in c.decode(stream)]


# -- timing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_survives_decode_encode_and_join_exactly(tmp_path, suffix):
    src = write_clip(
        tmp_path / f"vfr{suffix}",
        time_base=TB if suffix == ".mp4" else Fraction(1, 1000),
        pts=VFR_PTS if suffix == ".mp4" else [0, 33, 67, 133, 167, 233, 267, 300, 400, 433, 467, 533],
    )
    frames, ended, info = decode_all(src)
    assert ended is None and info.vfr
    source_times = times(src)
    assert [Fraction(f.pts) * info.time_base for f in frames] == source_times
    # Two segments (as a resumed or distributed run writes them), joined without re-encoding.
    segments = []
    for k, part in enumerate((frames[:5], frames[5:])):
        segments.append(tmp_path / f"seg{k}{suffix}")
        encode_frames(segments[-1], part, info)
    out = tmp_path / f"joined{suffix}"
    remux.join_segments(segments, out, source=src)
    assert times(out) == source_times  # every frame where it was, to the tick


def test_transport_stream_segments_keep_times_and_audio_sync(tmp_path):
    """MPEG-TS cannot hold negative decode times; the writer's fixed lead keeps segments in
    step and the join takes it off, so frames and sound stay where they were."""
    pts = [0, 3000, 6000, 12000, 15000, 21000, 24000, 27000, 36000, 39000, 42000, 48000]
    src = write_clip(tmp_path / "talk.ts", pts=pts, time_base=Fraction(1, 90000), audio=True)
    frames, _, info = decode_all(src)
    segments = []
    for k, part in enumerate((frames[:5], frames[5:])):
        segments.append(tmp_path / f"seg{k}.ts")
        encode_frames(segments[-1], part, info)
    out = tmp_path / "joined.ts"
    assert remux.join_segments(segments, out, source=src) == ["kept audio #1 aac"]
    got, want = times(out), times(src)
    assert [t - got[0] for t in got] == [t - want[0] for t in want]

    def audio_lead(path):  # first sound relative to the first frame, in seconds
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            first = min(p.pts * a.time_base for p in c.demux(a) if p.size and p.pts is not None)
        return float(first - times(path)[0])

    # the AAC priming packet (before the first frame) is left out of TS: within one AAC frame
    assert abs(audio_lead(out) - audio_lead(src)) <= 1024 / 48000 + 1e-6


def test_avi_puts_a_variable_rate_on_its_frame_grid_and_says_so(tmp_path):
    src = write_clip(tmp_path / "vfr.mp4")
    frames, _, info = decode_all(src)
    segments = [tmp_path / "seg0.avi", tmp_path / "seg1.avi"]
    notes = [encode_frames(seg, part, info).notes for seg, part in zip(segments, (frames[:5], frames[5:]))]
    grid = f"AVI stores no frame times, only a rate: frames placed on the {float(info.rate):g} fps grid"
    assert notes[0] == notes[1] == [grid]
    remux.join_segments(segments, tmp_path / "out.avi")
    assert len(times(tmp_path / "out.avi")) == len(frames)


def test_trimmed_source_yields_the_window_and_the_join_starts_at_zero(tmp_path):
    src = write_clip(tmp_path / "talk.mp4", pts=[i * 512 for i in range(24)], audio=True)
    frames, ended, info = decode_all(src, start_s=0.2, duration_s=0.3)
    assert ended is None
    assert [f.pts for f in frames] == [i * 512 for i in range(24) if 0.2 <= i * 512 / 15360 < 0.5]
    assert frames[0].index == 0
    seg = tmp_path / "seg.mp4"
    encode_frames(seg, frames, info)
    out = tmp_path / "out.mp4"
    remux.join_segments([seg], out, source=src, start_s=0.2, duration_s=0.3)
    assert times(out) == [Fraction(f.pts - frames[0].pts) * TB for f in frames]  # moved to start at 0
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        starts = [float(p.pts * a.time_base) for p in c.demux(a) if p.size]
    assert starts and -0.001 <= starts[0] < 0.03 and starts[-1] < 0.3  # the audio of the window only


# -- orientation, depth, colour -----------------------------------------------------------------
def test_rotation_is_applied_to_the_pixels_and_the_output_has_no_tag(tmp_path):
    """Decision: frames come out upright (as core's Load Video gives them), so the written file
    is upright and carries no rotation tag; a player shows it as it showed the source."""
    src = write_clip(tmp_path / "phone.mp4", rotation=90, pts=[i * 512 for i in range(6)])
    frames, ended, info = decode_all(src)
    assert info.rotation == 90 and info.display_size == (H, W) and ended is None
    assert frames[0].image.shape == (W, H, 3)
    expected = np.rot90(picture(0).astype(np.float32) / 255, k=1, axes=(0, 1))  # counter-clockwise
    assert np.abs(frames[0].image.numpy() - expected).mean() < 0.03
    out = tmp_path / "out.mp4"
    encode_frames(out, frames, info, codec="h264 lossless")
    assert container.probe(out).rotation == 0
    again, _, _ = decode_all(out)
    assert again[0].image.shape == (W, H, 3)
    # 8-bit storage, then core's float conversion of 8-bit RGB (up to one level low): <= 2 levels
    assert np.abs(again[0].image.numpy() - frames[0].image.numpy()).max() < 2 / 255


def source_info(path: Path, width: int, height: int, *, pix_fmt: str, time_base: Fraction) -> container.SourceInfo:
    """The SourceInfo of an 8-bit, 30 fps, constant-rate, unrotated source that was never read
    from a file (frames made in memory)."""
    return container.SourceInfo(
        path=path,
        width=width,
        height=height,
        frame_count=None,
        average_rate=Fraction(30),
        time_base=time_base,
        duration_s=None,
        start_time_s=0.0,
        pix_fmt=pix_fmt,
        bit_depth=8,
        has_alpha=False,
        rotation=0,
        color=container.ColorInfo(),
        vfr=False,
    )


def write_ten_bit_hevc(path: Path) -> Path:
    """A 6-frame 10-bit HEVC clip (skips the test where this PyAV build cannot write one)."""
    if not has_encoder("libx265"):
        pytest.skip("this PyAV build has no libx265 encoder to write the 10-bit HEVC input")
    return write_clip(
        path,
        codec="libx265",
        pix_fmt="yuv420p10le",
        frame_fmt="rgb48le",
        pts=[i * 512 for i in range(6)],
        options={"x265-params": "log-level=error"},
    )


@pytest.mark.parametrize("codec", ["h265", "h264"])
def test_ten_bit_hevc_input_gives_a_ten_bit_output(tmp_path, codec):
    src = write_ten_bit_hevc(tmp_path / "deep.mp4")
    frames, ended, info = decode_all(src)
    assert info.bit_depth == 10 and info.pix_fmt == "yuv420p10le" and ended is None
    choice = encode.codec_choice(codec)
    if choice.max_depth < 10:
        pytest.skip(f"this PyAV build's {choice.encoder} has no 10-bit pixel format")
    out = tmp_path / "out.mp4"
    writer = encode_frames(out, frames, info, codec=codec, quality=10)
    assert writer.notes == [] and writer.pix_fmt == "yuv420p10le"
    assert container.probe(out).bit_depth == 10
    again, _, _ = decode_all(out)
    levels = torch.unique(torch.round(again[2].image * 1023))
    assert levels.numel() > 256  # more levels than 8 bits hold
    assert (again[2].image - frames[2].image).abs().mean() < 0.01


def test_ten_bit_into_an_eight_bit_codec_says_it_reduced_the_depth(tmp_path):
    src = write_ten_bit_hevc(tmp_path / "deep.mp4")
    frames, _, info = decode_all(src)
    writer = encode_frames(tmp_path / "out.mp4", frames, info, codec="h264 lossless")
    assert writer.notes == ["the source has 10-bit samples; h264 lossless stores 8 bits (depth reduced)"]


def test_colour_metadata_is_kept(tmp_path):
    bt709 = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}
    src = write_clip(tmp_path / "hd.mp4", color=bt709, pts=[i * 512 for i in range(6)])
    frames, _, info = decode_all(src)
    assert info.color == container.ColorInfo(primaries=1, transfer=1, matrix=1, range=1)
    out = tmp_path / "out.mp4"
    encode_frames(out, frames, info)
    assert container.probe(out).color == info.color
    again, _, _ = decode_all(out)
    # converted back with the same matrix: the colours are where they were (crf noise only)
    assert (again[3].image - frames[3].image).abs().mean() < 0.01


# -- damage and hostile inputs -------------------------------------------------------------------
def packet_spans(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of each video packet, in file order."""
    with av.open(str(path)) as c:
        return sorted((p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size)


def test_truncated_file_gives_the_frames_before_the_damage_and_says_where(tmp_path):
    src = write_clip(
        tmp_path / "whole.mp4", pts=[i * 512 for i in range(24)], container_options={"movflags": "faststart"}
    )  # header first, as phones write
    whole, ended, _ = decode_all(src)
    assert ended is None and len(whole) == 24
    cut = tmp_path / "cut.mp4"
    pos, size = packet_spans(src)[12]
    cut.write_bytes(src.read_bytes()[: pos + size // 2])  # the download stopped inside frame 12
    frames, ended, _ = decode_all(cut)
    assert 0 < len(frames) < 24
    assert ended is not None and f"after {len(frames)} frame(s)" in ended
    assert f"last good frame at {frames[-1].time_s:.3f} s" in ended
    assert "truncated" in ended or "damaged" in ended
    by_pts = {f.pts: f for f in whole}
    for got in frames:  # what decoded is what the whole file holds
        assert torch.equal(got.image, by_pts[got.pts].image)


def test_corrupt_middle_keeps_the_frames_before_it(tmp_path):
    src = write_clip(tmp_path / "whole.mp4", pts=[i * 512 for i in range(24)])
    whole, _, _ = decode_all(src)
    data = bytearray(src.read_bytes())
    pos, size = packet_spans(src)[10]
    data[pos : pos + size] = b"\xff" * size  # one frame overwritten with garbage
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    frames, ended, _ = decode_all(bad)
    assert 0 < len(frames) < 24
    assert ended is not None and "the input is damaged" in ended and "Invalid data" in ended
    by_pts = {f.pts: f for f in whole}
    for got in frames:  # each frame returned is the whole file's frame at that time
        assert torch.equal(got.image, by_pts[got.pts].image)
    assert [f.pts for f in frames[:8]] == [f.pts for f in whole[:8]]


def test_no_video_stream_is_one_clear_error(tmp_path):
    path = tmp_path / "sound.mp4"
    with av.open(str(path), mode="w") as out:
        sound = out.add_stream("aac", rate=48000, layout="mono")
        block = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        block.sample_rate, block.pts = 48000, 0
        for packet in [*sound.encode(block), *sound.encode()]:
            out.mux(packet)
    with pytest.raises(container.VideoInputError, match=r"sound.mp4 has no video stream \(it holds audio\)"):
        container.probe(path)
    assert issubclass(container.VideoInputError, ValueError)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(container.VideoInputError, match="cannot open video"):
        container.open_source(text)


def test_alpha_is_decoded_and_the_mp4_codec_says_it_drops_it(tmp_path):
    src = write_clip(
        tmp_path / "alpha.mkv",
        codec="ffv1",
        pix_fmt="yuva420p",
        frame_fmt="rgba",
        pts=[0, 33, 67],
        time_base=Fraction(1, 1000),
    )
    frames, ended, info = decode_all(src)
    assert info.has_alpha and frames[0].image.shape == (H, W, 4) and ended is None
    assert abs(float(frames[1].image[..., 3].mean()) - 129 / 255) < 0.01
    writer = encode_frames(tmp_path / "out.mp4", frames, info)
    assert len(writer.notes) == 1 and "alpha" in writer.notes[0] and "dropped" in writer.notes[0]
    assert len(decode_all(tmp_path / "out.mp4")[0]) == 3


def test_resolution_change_mid_stream_stops_there_with_the_reason(tmp_path):
    first = write_clip(tmp_path / "a.ts", pts=[i * 3000 for i in range(6)], time_base=Fraction(1, 90000))
    second = write_clip(
        tmp_path / "b.ts", pts=[(i + 6) * 3000 for i in range(6)], time_base=Fraction(1, 90000), size=(32, 24)
    )
    joined = tmp_path / "changes.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())  # transport streams concatenate
    frames, ended, _ = decode_all(joined)
    assert len(frames) == 6
    assert ended is not None and "resolution changes mid-stream (64x48 -> 32x24)" in ended


def test_full_disk_is_one_oserror_line(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root to mount a tiny tmpfs")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        info = source_info(mount / "none", 320, 240, pix_fmt="yuv420p", time_base=Fraction(1, 30))

        def lossless_writer(path: Path) -> encode.VideoWriter:
            return encode.VideoWriter(
                path,
                width=320,
                height=240,
                codec="h264 lossless",
                source=info,
                time_base=Fraction(1, 30),
                rate=Fraction(30),
                threads=1,
            )

        writer = lossless_writer(mount / "big.mp4")
        rng = np.random.default_rng(0)
        with pytest.raises(OSError) as caught:
            for i in range(200):  # incompressible frames: far more than 200 kB
                writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), i)
            writer.close()
        writer.abort()
        message = str(caught.value)
        assert "\n" not in message and "big.mp4" in message and "space" in message.lower()
        # the join: a segment bigger than the disk's room
        segment = tmp_path / "segment.mp4"
        with lossless_writer(segment) as big:
            for i in range(8):
                big.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), i)
        assert segment.stat().st_size > 400_000
        for leftover in mount.iterdir():
            leftover.unlink()
        with pytest.raises(OSError) as caught:
            remux.join_segments([segment], mount / "joined.mp4")
        message = str(caught.value)
        assert "\n" not in message and "joined.mp4" in message and "space" in message.lower()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# -- streams, sizes, exactness -------------------------------------------------------------------
def test_audio_is_copied_bit_exactly(tmp_path):
    src = write_clip(tmp_path / "talk.mp4", pts=[i * 512 for i in range(24)], audio=True)
    frames, _, info = decode_all(src)
    assert info.audio == ["audio #1 aac (und)"]
    seg = tmp_path / "seg.mp4"
    encode_frames(seg, frames, info)
    out = tmp_path / "out.mp4"
    notes = remux.join_segments([seg], out, source=src)
    assert notes == ["kept audio #1 aac (und)"]

    def packets(path):
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            return [(p.pts, bytes(p)) for p in c.demux(a) if p.size]

    assert packets(out) == packets(src)
    with av.open(str(out)) as c, av.open(str(seg)) as s:  # the video packets are the segment's
        assert [bytes(p) for p in c.demux(c.streams.video[0]) if p.size] == [
            bytes(p) for p in s.demux(s.streams.video[0]) if p.size
        ]


def test_subtitles_are_copied_where_the_container_holds_them_else_dropped_with_a_note(tmp_path):
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,300\nHello there\n")
    video = write_clip(
        tmp_path / "v.mkv", pts=[0, 33, 67, 100, 133, 167, 200, 233, 267, 300, 333, 367], time_base=Fraction(1, 1000)
    )
    src = tmp_path / "subbed.mkv"
    remux.join_segments([video], src, source=srt)
    frames, _, info = decode_all(src)
    assert info.subtitles == ["subtitle #1 srt"]
    seg = tmp_path / "seg.mkv"
    encode_frames(seg, frames, info)
    assert remux.join_segments([seg], tmp_path / "out.mkv", source=src) == ["kept subtitle #1 srt"]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size] == [b"Hello there"]
    seg4 = tmp_path / "seg.mp4"
    encode_frames(seg4, frames, info)
    notes = remux.join_segments([seg4], tmp_path / "out.mp4", source=src)
    assert notes == ["not kept: subtitle #1 srt: .mp4 cannot hold it (.mp4 holds only mov_text subtitles)"]


def test_odd_sizes_are_padded_to_even_with_one_note(tmp_path):
    src = write_clip(
        tmp_path / "odd.mkv",
        codec="ffv1",
        pix_fmt="yuv444p",
        size=(63, 47),
        pts=[0, 33, 67],
        time_base=Fraction(1, 1000),
    )
    frames, _, info = decode_all(src)
    assert frames[0].image.shape == (47, 63, 3)
    writer = encode_frames(tmp_path / "out.mp4", frames, info)
    assert writer.notes == ["63x47 padded to 64x48 (h264 needs even sizes; the last column/row is repeated)"]
    again, _, _ = decode_all(tmp_path / "out.mp4")
    assert again[0].image.shape == (48, 64, 3) and len(again) == 3
    assert (again[1].image[:47, :63] - frames[1].image).abs().mean() < 0.02


def test_lossless_h264_rgb_round_trip_gives_identical_8bit_pixels(tmp_path):
    if not encode.codec_choice("h264 lossless").available:
        pytest.skip("this PyAV build has no libx264rgb encoder")
    rng = np.random.default_rng(1)
    pictures = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(5)]
    info = source_info(tmp_path / "x", W, H, pix_fmt="rgb24", time_base=TB)
    out = tmp_path / "master.mp4"
    with encode.VideoWriter(
        out, width=W, height=H, codec="h264 lossless", source=info, time_base=TB, rate=Fraction(30), threads=1
    ) as writer:
        for i, img in enumerate(pictures):
            writer.write(img if i % 2 else torch.from_numpy(img).float() / 255, i * 512)
    with av.open(str(out)) as c:  # the file holds exactly the 8-bit pixels written
        stored = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(stored) == 5 and all(np.array_equal(got, want) for got, want in zip(stored, pictures))
    # Decoded as core decodes it (planar float from 8-bit planar RGB), FFmpeg's converter gives
    # each level within 1.1 levels (core's numbers; the file itself is exact).
    frames, ended, _ = decode_all(out)
    assert ended is None and len(frames) == 5
    for got, want in zip(frames, pictures):
        assert np.abs(want.astype(np.float32) / 255 - got.image.numpy()).max() < 1.2 / 255


def test_encoder_choices_say_what_is_missing_and_what_does_not_preview():
    choices = {c.name: c for c in encode.encoder_choices()}
    assert {"h264", "h265", "h264 lossless"} <= set(choices)
    assert choices["h264"].browser_preview and not choices["h265"].browser_preview
    assert not choices["h264 lossless"].browser_preview and choices["h264 lossless"].lossless
    for choice in choices.values():
        assert choice.available == has_encoder(choice.encoder)
        assert choice.available or "no " + choice.encoder in choice.why_not
    with pytest.raises(ValueError, match="unknown video codec 'h266'"):
        encode.codec_choice("h266")


def test_identity_changes_when_the_file_does(tmp_path):
    path = write_clip(tmp_path / "a.mp4", pts=[0, 512])
    first = container.identity(path)
    assert container.identity(path) == first
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime, other bytes
    assert container.identity(path) != first


# -- equal to ComfyUI core's decoder ------------------------------------------------------------
CORE_PYTHON = Path(os.environ.get("COMFY033_PYTHON", "/work/envs/c033/venv/bin/python"))
CORE_DIR = Path(os.environ.get("COMFYUI_DIR", "/work/envs/c033/ComfyUI"))
CORE_DUMP = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from comfy_api.latest._input_impl.video_types import VideoFromFile
for path, out, start, duration in json.loads(sys.argv[2]):
    parts = VideoFromFile(path, start_time=start, duration=duration).get_components()
    np.save(out, parts.images.numpy())
"""


def test_frames_equal_what_core_load_video_decodes(tmp_path):
    """0.33's VideoFromFile.get_components() on the same files: planar float (gbrpf32le) with
    its 32-pixel alignment, packed 8-bit for full-range JPEG YUV, rotation, trimming."""
    if not CORE_PYTHON.exists() or not (CORE_DIR / "comfy_api").is_dir():
        pytest.skip(f"ComfyUI 0.33 not found ({CORE_PYTHON}, {CORE_DIR}); set COMFY033_PYTHON and COMFYUI_DIR")
    cases = [
        (write_clip(tmp_path / "plain.mp4", pts=[i * 512 for i in range(8)]), 0.0, None),  # 64 wide: aligned
        (write_clip(tmp_path / "odd.mp4", size=(70, 40), pts=[i * 512 for i in range(8)]), 0.0, None),
        (write_clip(tmp_path / "vfr.mp4"), 0.1, 0.2),
        (write_clip(tmp_path / "rot.mp4", size=(70, 40), rotation=270, pts=[i * 512 for i in range(4)]), 0.0, None),
        (
            write_clip(
                tmp_path / "full.mkv", codec="mjpeg", pix_fmt="yuvj420p", pts=[0, 40, 80], time_base=Fraction(1, 1000)
            ),
            0.0,
            None,
        ),
    ]
    if has_encoder("libx265"):
        cases.append(
            (
                write_clip(
                    tmp_path / "deep.mp4",
                    codec="libx265",
                    pix_fmt="yuv420p10le",
                    size=(70, 40),
                    frame_fmt="rgb48le",
                    pts=[0, 512, 1024],
                    options={"x265-params": "log-level=error"},
                ),
                0.0,
                None,
            )
        )
    jobs = [(str(p), str(tmp_path / f"{p.stem}.core.npy"), s, d or 0) for p, s, d in cases]
    done = subprocess.run(
        [str(CORE_PYTHON), "-c", CORE_DUMP, str(CORE_DIR), json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for (path, start, duration), (_, npy, _, _) in zip(cases, jobs):
        core = torch.from_numpy(np.load(npy))
        ours, ended, _ = decode_all(path, start_s=start, duration_s=duration)
        assert ended is None
        mine = torch.stack([f.image for f in ours])
        assert mine.dtype == core.dtype == torch.float32
        assert mine.shape == core.shape, path.name
        assert torch.equal(mine, core), f"{path.name}: max difference {(mine - core).abs().max():.3g}"


def test_without_pyav_a_video_gives_the_install_line(tmp_path):
    """The pack imports without PyAV; touching a video says how to get it."""
    code = (
        "import sys; sys.modules['av'] = None\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from packlib import import_pack; import_pack()\n"
        "from paragonsr2_pack.engines.video import container, encode, remux\n"
        "try:\n"
        f"    container.probe({str(tmp_path / 'x.mp4')!r})\n"
        "except container.PyAVMissing as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "video files need PyAV, which is not installed: pip install av" in done.stdout
