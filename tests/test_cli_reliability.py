"""Nothing lost, nothing silently wrong: atomic outputs under real signals, every image mode read
by its real range, ICC / EXIF / animation timing / audio kept, bad outputs refused up front,
file modes that honour the umask. Real files written here, the bundled demo model, real
subprocesses."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from packlib import LAUNCHER, PACK_ROOT, launch_cli
from paragonsr2_pack import cli
from paragonsr2_pack.cli import image_io
from paragonsr2_pack.engines.runtime import files
from paragonsr2_pack.engines.video import encode, remux

DEMO_MODEL = PACK_ROOT / "models" / "ParagonSR2_realtime_x2_demo.safetensors"
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|Traceback|Errno")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, arch):
    torch.manual_seed(0)
    model = arch.build_model("realtime", 2)
    return arch.save_model(model, tmp_path_factory.mktemp("model") / "realtime_x2.safetensors")


def gradient(h=24, w=40):
    return np.tile(np.linspace(0, 1, w, dtype=np.float64), (h, 1))


def run_cli(args):
    return cli.main([str(a) for a in args])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if files.is_partial(p) or ".partial" in p.name)


# -- the atomic-write mechanism ----------------------------------------------------------------
def test_atomic_output_renames_only_a_complete_file_and_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.png"
        with files.atomic_output(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png" and files.is_partial(tmp)
            Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp)  # Pillow picks PNG from the suffix
            assert not target.exists()
        assert Image.open(target).getpixel((0, 0)) == (1, 2, 3)
        assert oct(target.stat().st_mode & 0o777) == oct(0o644)
        files.atomic_write_bytes(tmp_path / "m.onnx", b"graph")
        assert oct((tmp_path / "m.onnx").stat().st_mode & 0o777) == oct(0o644)
        os.umask(0o027)
        files.atomic_write_bytes(tmp_path / "g.bin", b"x")
        assert oct((tmp_path / "g.bin").stat().st_mode & 0o777) == oct(0o640)
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.bin", "m.onnx", "out.png"]


@pytest.mark.parametrize("failure", [ValueError, KeyboardInterrupt, SystemExit])
def test_atomic_output_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, failure):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"finished result")
    with pytest.raises(failure), files.atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise failure()
    assert target.read_bytes() == b"finished result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_atomic_output_without_overwrite_never_replaces_a_file_that_appeared(tmp_path):
    target = tmp_path / "a.png"
    with pytest.raises(FileExistsError), files.atomic_output(target, overwrite=False) as tmp:
        tmp.write_bytes(b"new")
        target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's" and leftovers(tmp_path) == []


def test_litter_of_a_killed_process_is_swept_but_live_writes_are_not(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".a.png.{dead}-abc123.partial.png"
    live = tmp_path / f".b.png.{os.getpid()}-def456.partial.png"
    stale.write_bytes(b"x")
    live.write_bytes(b"y")
    assert files.remove_stale_partials(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def test_export_onnx_file_mode_is_like_any_other_output(tmp_path, model_file):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    old = os.umask(0o022)
    try:
        assert run_cli(["export-onnx", "--model", model_file, "-o", tmp_path / "m.onnx"]) == 0
    finally:
        os.umask(old)
    assert oct((tmp_path / "m.onnx").stat().st_mode & 0o777) == oct(0o644)  # was 0600 (mkstemp)


# -- every image mode read by its real range -----------------------------------------------------
def _write_modes(folder: Path) -> dict:
    """file -> the 0..1 grey values it holds."""
    g = gradient()
    out = {}
    Image.fromarray((g * 65535).round().astype(np.uint16)).save(folder / "grey16.png")  # I;16
    out["grey16.png"] = g
    Image.fromarray(g.astype(np.float32)).save(folder / "float.tif")  # F, 32-bit float TIFF
    out["float.tif"] = g
    Image.fromarray((g * (2**31 - 1)).round().astype(np.int32)).save(folder / "int32.tif")  # I, signed 32-bit
    out["int32.tif"] = g
    Image.fromarray((g * 255).round().astype(np.uint8)).save(folder / "grey8.png")
    out["grey8.png"] = g
    Image.fromarray((g * 255).round().astype(np.uint8)).convert("P").save(folder / "palette.png")
    out["palette.png"] = g
    bw = g > 0.5
    Image.fromarray(bw).save(folder / "bilevel.png")  # mode 1
    out["bilevel.png"] = bw.astype(np.float64)
    return out


def test_every_mode_is_read_by_its_real_range(tmp_path):
    for name, expected in _write_modes(tmp_path).items():
        picture = image_io.read_image(tmp_path / name)
        got = picture.pixels[0].double().numpy()
        values = got[..., 0] if got.shape[-1] == 1 else got[..., :3].mean(-1)
        assert np.abs(values - expected).max() < 1 / 255 + 1e-6, name


def test_grey_alpha_palette_alpha_rgba_and_cmyk(tmp_path):
    g = (gradient() * 255).round().astype(np.uint8)
    la = Image.merge("LA", [Image.fromarray(g), Image.fromarray(np.full_like(g, 100))])
    la.save(tmp_path / "la.png")
    p = Image.fromarray(g).convert("P")
    p.info["transparency"] = int(np.asarray(p)[0, 0])
    p.save(tmp_path / "pa.png", transparency=int(np.asarray(p)[0, 0]))
    Image.fromarray(np.stack([g, g, g], -1)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    la_px = image_io.read_image(tmp_path / "la.png").pixels[0]
    assert la_px.shape[-1] == 4 and abs(float(la_px[..., 3].mean()) - 100 / 255) < 1e-6
    pa_px = image_io.read_image(tmp_path / "pa.png").pixels[0]
    assert pa_px.shape[-1] == 4 and float(pa_px[0, 0, 3]) == 0.0 and float(pa_px[..., 3].max()) == 1.0
    cmyk = image_io.read_image(tmp_path / "cmyk.jpg")
    assert cmyk.pixels.shape[-1] == 3
    assert np.abs(cmyk.pixels[0].mean(-1).numpy() - g / 255).max() < 0.05
    assert any("CMYK" in n for n in cmyk.notes)


@pytest.mark.parametrize(
    "name,suffix,mode,peak",
    [
        ("grey16.png", ".png", "I;16", 65535),
        ("grey16.png", ".tif", "I;16", 65535),
        ("float.tif", ".tif", "F", 1.0),
        ("float.tif", ".png", "I;16", 65535),
        ("grey16.png", ".jpg", "L", 255),
    ],
)
def test_sixteen_bit_grey_and_float_tiff_come_out_as_they_look(tmp_path, model_file, capsys, name, suffix, mode, peak):
    """Before: the I;16 PNG came out almost white, the 0..1 float TIFF black (exit 0 both).
    Now they look like their input, at 16 bits (or float) where the output format holds it."""
    _write_modes(tmp_path)
    out = tmp_path / f"up{suffix}"
    assert run_cli([tmp_path / name, "-o", out, "--model", model_file, "--device", "cpu", "--quiet"]) == 0
    with Image.open(out) as im:
        assert im.mode == mode and im.size == (80, 48)
        arr = np.asarray(im, dtype=np.float64) / peak
    assert abs(arr.mean() - 0.5) < 0.05, arr.mean()
    assert arr[:, :8].mean() < 0.15 and arr[:, -8:].mean() > 0.85  # the gradient is still there
    if mode != "L":
        assert len(np.unique(arr)) > 256  # more levels than 8 bits could hold
    else:
        assert "16-bit input; the output is 8-bit (.jpg holds 8 bits per channel" in capsys.readouterr().err


def _write_png16(path: Path, alpha: bool, icc: bytes | None = None) -> np.ndarray:
    """A real 16-bit RGB(A) PNG written by pypng: smooth ramps whose neighbours differ by less
    than one 8-bit step (an 8-bit read merges them). Returns the uint16 [H, W, C] it holds."""
    import zlib

    png = pytest.importorskip("png")
    h, w = 24, 40
    x = np.linspace(0, 1, w)[None, :] * np.ones((h, 1))
    y = np.linspace(0, 1, h)[:, None] * np.ones((1, w))
    planes = [30000 + 200 * x, 40000 - 150 * y, 1000 + 60000 * x * y]
    if alpha:
        planes.append(65535 - 300 * x)
    values = np.stack(planes, -1).round().astype(np.uint16)
    c = values.shape[-1]
    with path.open("wb") as f:
        png.Writer(w, h, greyscale=False, alpha=alpha, bitdepth=16).write(f, values.reshape(h, w * c).tolist())
    if icc is not None:  # pypng writes no iCCP: put one in after IHDR, as Pillow would read it
        chunks = list(png.Reader(filename=str(path)).chunks())
        chunks.insert(1, (b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
        with path.open("wb") as f:
            png.write_chunks(f, chunks)
    return values


@pytest.mark.parametrize("alpha", [False, True], ids=["rgb16", "rgba16"])
def test_sixteen_bit_colour_png_is_read_at_full_depth(tmp_path, model_file, capsys, alpha):
    """Before: Pillow read a 16-bit RGB(A) PNG at 8 bits per channel (silently)."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "deep.png"
    values = _write_png16(src, alpha, icc)
    picture = image_io.read_image(src)
    got = picture.pixels[0].double().numpy()
    assert got.shape == values.shape and picture.bits == 16
    assert np.abs(got - values / 65535.0).max() < 1e-6
    assert len(np.unique(got[..., 0])) > len(np.unique((values[..., 0] / 257).round()))  # finer than 8 bits
    assert picture.icc_profile == icc and not picture.notes
    out = tmp_path / "up.png"
    assert run_cli([src, "-o", out, "--model", model_file, "--device", "cpu"]) == 0
    with Image.open(out) as im:
        assert im.size == (80, 48) and im.mode == ("RGBA" if alpha else "RGB")
        assert im.info.get("icc_profile") == icc
    assert "16-bit input; the output is 8-bit (colour is written at 8 bits per channel" in capsys.readouterr().err


def test_sixteen_bit_colour_png_without_pypng_is_read_at_8_bits_and_says_so(tmp_path, model_file, capsys, monkeypatch):
    src = tmp_path / "deep.png"
    values = _write_png16(src, alpha=False)
    monkeypatch.setitem(sys.modules, "png", None)  # `import png` raises ImportError
    picture = image_io.read_image(src)
    assert np.abs(picture.pixels[0].double().numpy() - values / 65535.0).max() < 1 / 255
    assert picture.notes == ["16-bit colour PNG read at 8 bits per channel (pip install pypng reads it at 16)"]
    assert run_cli([src, "-o", tmp_path / "up.png", "--model", model_file, "--device", "cpu"]) == 0
    assert "deep.png: 16-bit colour PNG read at 8 bits per channel (pip install pypng" in capsys.readouterr().err


# -- ICC profiles, EXIF orientation ---------------------------------------------------------------
def test_icc_profile_is_kept_and_exif_orientation_applied(tmp_path, model_file, capsys):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.zeros((24, 40, 3), np.uint8)
    rgb[:, :20] = (200, 30, 30)  # left half red: where it ends up tells the orientation
    src = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(rgb).save(src, icc_profile=icc, exif=exif.tobytes(), quality=95)
    for suffix in (".png", ".jpg", ".webp", ".tif"):
        out = tmp_path / f"up{suffix}"
        assert run_cli([src, "-o", out, "--model", model_file, "--device", "cpu", "--quiet"]) == 0
        with Image.open(out) as im:
            assert im.info.get("icc_profile") == icc, suffix
            assert im.size == (48, 80), suffix  # 24x40 shown upright = 40 tall, 24 wide; x2
            assert im.getexif().get(0x0112, 1) == 1
            top = np.asarray(im.convert("RGB"))[:20].mean(axis=(0, 1))
            assert top[0] > 150 and top[1] < 90, suffix  # the red half is now on top
    assert run_cli([src, "-o", tmp_path / "up.bmp", "--model", model_file, "--device", "cpu", "--quiet"]) == 0
    assert "colour profile not kept: .bmp cannot hold one" in capsys.readouterr().err


# -- animations --------------------------------------------------------------------------------
def _animation(path: Path, n=4, durations=(40, 120, 200, 80)):
    frames = []
    for i in range(n):
        arr = np.zeros((24, 32, 3), np.uint8)
        arr[:, i * 8 : (i + 1) * 8] = (250, 250, 250)  # a bar that moves: frames are different
        frames.append(Image.fromarray(arr))
    extra = {"lossless": True} if path.suffix == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=list(durations[:n]), loop=0, **extra)
    return list(durations[:n])


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_animations_keep_every_frame_and_its_timing(tmp_path, model_file, suffix):
    """Before: an animated WebP kept only its first frame (exit 0)."""
    src = tmp_path / f"anim{suffix}"
    durations = _animation(src)
    out = tmp_path / f"anim_x2{suffix}"
    assert (
        run_cli([src, "-o", out, "--model", model_file, "--device", "cpu", "--quiet", "--temporal-strength", "0"]) == 0
    )
    with Image.open(out) as im:
        assert im.n_frames == 4 and im.size == (64, 48)
        got_durations, bars = [], []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            got_durations.append(im.info.get("duration"))
            bars.append(int(np.asarray(im.convert("L"), dtype=np.float64).mean(axis=0).argmax()) // 16)
    assert got_durations == durations
    assert bars == [0, 1, 2, 3]  # each frame is its own picture, in order


def test_an_animation_into_a_still_format_is_refused_before_work(tmp_path, model_file, capsys):
    src = tmp_path / "anim.gif"
    _animation(src)
    assert run_cli([src, "-o", tmp_path / "still.jpg", "--model", model_file, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "animation can be written as .gif .png .webp" in err and not CLASS_NAME.search(err)


# -- videos: audio kept, containers and codecs checked up front ------------------------------------
def write_clip(path: Path, frames=12, size=(48, 32), audio=True, rate=10):
    import av

    w, h = size
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = container.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i in range(frames):
            arr = np.zeros((h, w, 3), np.uint8)
            arr[:, (i * 4) % w : (i * 4) % w + 8] = 255
            for packet in video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        if sound is not None:
            samples = int(44100 * frames / rate)
            tone = (0.3 * np.sin(np.arange(samples) / 44100 * 2 * np.pi * 440)).astype(np.float32)
            for start in range(0, samples, 1024):
                block = tone[start : start + 1024][None]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 44100, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


def probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        streams = {s.type: s.codec_context.name for s in container.streams}
        frames = sum(1 for _ in container.decode(video=0))
    audio_samples = 0
    if "audio" in streams:
        with av.open(str(path)) as container:
            audio_samples = sum(f.samples for f in container.decode(audio=0))
    return {"streams": streams, "frames": frames, "audio_samples": audio_samples}


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_video_audio_is_copied_into_the_output(tmp_path, model_file, suffix, capsys):
    """Before: the audio track was dropped without a word."""
    pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")
    src = write_clip(tmp_path / "talk.mp4")
    out = tmp_path / f"talk_x2{suffix}"
    assert (
        run_cli([src, "-o", out, "--model", model_file, "--device", "cpu", "--quiet", "--frames-per-chunk", "5"]) == 0
    )
    got, source = probe(out), probe(src)
    assert got["frames"] == 12 and got["streams"]["audio"] == "aac"
    assert got["audio_samples"] == source["audio_samples"]  # copied, not re-encoded or cut
    assert "kept audio #1 aac" in capsys.readouterr().out
    assert leftovers(tmp_path) == []


def test_webm_gets_vp9_and_says_it_drops_the_aac_track(tmp_path, model_file, capsys):
    """Before: '.webm' failed after the whole upscale with a libx264 error from the library."""
    pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")
    src = write_clip(tmp_path / "talk.mp4")
    out = tmp_path / "talk.webm"
    code = run_cli([src, "-o", out, "--model", model_file, "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    if not any(c.available and ".webm" in c.containers and not c.lossless for c in encode.encoder_choices()):
        assert code == 2 and "this PyAV build has no encoder for .webm" in err  # refused before work
        return
    assert code == 0
    got = probe(out)
    assert list(got["streams"]) == ["video"] and got["streams"]["video"] in ("vp9", "av1", "libdav1d")
    assert got["frames"] == 12
    assert "not kept: audio #1 aac" in err and ".webm cannot hold it" in err and not CLASS_NAME.search(err)


def test_remux_joins_segments_with_the_source_audio_without_reencoding(tmp_path):
    """The joiner the distributed run uses: segments end to end, the source's audio added."""
    pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")
    src = write_clip(tmp_path / "src.mp4", frames=20)
    first = write_clip(tmp_path / "seg1.mp4", frames=12, audio=False)
    second = write_clip(tmp_path / "seg2.mp4", frames=8, audio=False)
    out = tmp_path / "joined.mp4"
    notes = remux.join_segments([first, second], out, source=src)
    assert notes == ["kept audio #1 aac (und)"]
    got = probe(out)
    assert got["frames"] == 20 and got["audio_samples"] == probe(src)["audio_samples"]


def test_subtitles_are_copied_where_the_container_holds_them_and_dropped_aloud_elsewhere(tmp_path, model_file, capsys):
    av = pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,600\nHello there\n\n2\n00:00:00,700 --> 00:00:01,000\nBye\n")
    video_only = write_clip(tmp_path / "video.mkv", frames=10, audio=False)
    src = tmp_path / "subbed.mkv"
    assert remux.join_segments([video_only], src, source=srt) == ["kept subtitle #0 srt"]  # a subtitled source
    args = ["--model", model_file, "--device", "cpu", "--quiet"]
    assert run_cli([src, "-o", tmp_path / "out.mkv", *args]) == 0
    with av.open(str(tmp_path / "out.mkv")) as container:
        assert [s.type for s in container.streams] == ["video", "subtitle"]
        texts = [bytes(p) for p in container.demux(container.streams[1]) if p.size]
    assert texts == [b"Hello there", b"Bye"]
    assert run_cli([src, "-o", tmp_path / "out.mp4", *args]) == 0
    assert "not kept: subtitle #1 srt: .mp4 cannot hold it" in capsys.readouterr().err
    assert list(probe(tmp_path / "out.mp4")["streams"]) == ["video"]


# -- refused before any work: exit 2, one line, no internals -----------------------------------------
@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--temporal-strength", "1.5", "1.5 is outside 0..0.95"),
        ("--frames-per-chunk", "0", "0 is outside 1..256"),
        ("--scene-cut-sensitivity", "5", "5 is outside 0..1"),
        ("--tile", "-1", "-1 is outside 16..16384 or 0"),
        ("--tile", "abc", "'abc' is not an integer"),
    ],
)
def test_numeric_options_out_of_range_are_refused(tmp_path, option, value, message, capsys):
    """Before: --temporal-strength 1.5 gave rc 1 with 'ValueError:'; the others ran silently."""
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    with pytest.raises(SystemExit) as exc:
        cli.main([str(src), option, value, "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err and message in err and not CLASS_NAME.search(err)
    assert not list(tmp_path.glob("a_ParagonSR2*"))


def _bad_outputs(tmp_path):
    folder = tmp_path / "existing_folder"
    folder.mkdir()
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    return [
        (folder, "is a folder; give a file name"),
        (tmp_path / "out.xyz", "has extension .xyz"),
        (tmp_path / "out", "has no extension"),
        (a_file / "out.png", "plain.txt is a file, not a folder"),
        (Path("/proc/paragonsr2-test/out.png"), "files cannot be created in /proc"),
    ]


def test_bad_output_paths_are_refused_before_the_model_is_loaded(tmp_path, capsys):
    """Before: an unwritable folder was found after the whole upscale (24.6 s on 3000x2000)."""
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    missing_model = tmp_path / "no_such_model.safetensors"  # loading it would fail with exit 1
    for target, message in _bad_outputs(tmp_path):
        if str(target).startswith("/proc") and not Path("/proc").is_dir():
            continue
        assert run_cli([src, "-o", target, "--model", missing_model, "--quiet"]) == 2, target
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and not CLASS_NAME.search(err), err


def test_existing_output_and_input_as_output_are_usage_errors(tmp_path, model_file, capsys):
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    done = tmp_path / "done.png"
    done.write_bytes(b"finished earlier")
    assert run_cli([src, "-o", done, "--model", model_file, "--quiet"]) == 2
    assert run_cli([src, "-o", src, "--overwrite", "--model", model_file, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "refusing to overwrite the input" in err
    assert done.read_bytes() == b"finished earlier" and not CLASS_NAME.search(err)


def test_model_name_appears_once_in_a_load_error(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a model")
    assert run_cli([src, "--model", junk, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("junk.safetensors") == 1 and not CLASS_NAME.search(err), err


def test_a_python_without_torch_gets_one_line_saying_which_interpreter_to_use(tmp_path):
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    # -S: no site-packages, so this very interpreter has no torch (a real "wrong Python").
    result = subprocess.run([sys.executable, "-S", str(LAUNCHER), str(src)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "has no torch" in result.stderr
    assert "setup_env.sh" in result.stderr or "python" in result.stderr.split(";")[1]
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("a_ParagonSR2*"))


# -- folders: skip what is done, report what is not -------------------------------------------------
def _folder(tmp_path, n=3, size=(24, 16)):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)).save(folder / f"f{i}.png")
    return folder


def test_folder_refuses_existing_outputs_unless_told_and_skip_existing_does_the_rest(tmp_path, model_file, capsys):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "f1.png").write_bytes(b"done before")
    args = [folder, "-o", out, "--model", model_file, "--device", "cpu", "--quiet"]
    assert run_cli(args) == 2
    assert "1 of 3 outputs already exist" in capsys.readouterr().err
    # Before: an output that is a file gave 'FileExistsError: [Errno 17]' after the first image.
    assert run_cli([folder, "-o", out / "f1.png", "--model", model_file, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is a file; a folder input needs an output folder" in err and not CLASS_NAME.search(err)
    assert run_cli(args + ["--skip-existing"]) == 0
    assert (out / "f1.png").read_bytes() == b"done before"
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f1.png", "f2.png"]
    assert "3 of 3 images in" in capsys.readouterr().out


# -- real signals to a real process ---------------------------------------------------------------


def _wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_video_leaves_nothing_and_the_rerun_is_not_blocked(tmp_path, signum, code):
    """Before: Ctrl-C left a short valid-looking video under the requested name (16 of 200
    frames) and the rerun refused to overwrite it."""
    pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")
    long_clip = write_clip(tmp_path / "long.mp4", frames=300, size=(64, 48))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "long_x2.mp4"
    proc = launch_cli(
        [long_clip, "-o", out, "--device", "cpu", "--quiet", "--frames-per-chunk", "4", "--model", DEMO_MODEL], tmp_path
    )
    started = _wait_for(lambda: any(p.stat().st_size > 0 for p in out_dir.iterdir()), proc)
    time.sleep(0.5)  # well inside the run: frames are being upscaled and encoded
    assert started and proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    # no short video, no temporary file; only the hidden work area (finished segments, for resume)
    assert [p.name for p in out_dir.iterdir() if p.name != ".long_x2.mp4.paragonsr2-work"] == []
    assert "no partial output was left" in err and not CLASS_NAME.search(err)
    short = write_clip(tmp_path / "short.mp4", frames=6)
    assert run_cli([short, "-o", out, "--model", DEMO_MODEL, "--device", "cpu", "--quiet"]) == 0
    assert probe(out)["frames"] == 6


def test_ctrl_c_while_a_png_is_saved_leaves_no_litter(tmp_path):
    """Before: '.NAME.partial.png' (6.7 MB, truncated) was left behind."""
    src = tmp_path / "big.png"
    rng = np.random.default_rng(0)  # noise: PNG compression is slow, so the save takes a while
    Image.fromarray(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)).save(src, compress_level=0)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for _attempt in range(3):
        proc = launch_cli(
            [src, "-o", out_dir / "big_x2.png", "--device", "cpu", "--quiet", "--tile", "512", "--model", DEMO_MODEL],
            tmp_path,
        )
        # The temporary file appears only when saving starts (the upscale comes first).
        _wait_for(lambda: any(p.stat().st_size > 0 for p in out_dir.iterdir()), proc, timeout=300)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 130:
            break
        assert proc.returncode == 0, err  # finished before the signal landed: try again
        (out_dir / "big_x2.png").unlink()
    assert proc.returncode == 130, err
    assert list(out_dir.iterdir()) == []


def test_ctrl_c_in_a_folder_reports_what_is_finished_and_the_rerun_does_the_rest(tmp_path):
    folder = _folder(tmp_path, n=6, size=(320, 240))
    out = tmp_path / "out"
    proc = launch_cli([folder, "-o", out, "--device", "cpu", "--quiet", "--model", DEMO_MODEL], tmp_path)
    assert _wait_for(lambda: (out / "f0.png").exists(), proc), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the folder finished before the signal arrived (a very fast machine)")
    assert proc.returncode == 130, err
    finished = sorted(p.name for p in out.iterdir())
    assert leftovers(out) == [] and finished and "f5.png" not in finished
    assert "finished: f0.png" in err and "not finished (no file written):" in err and "--skip-existing" in err
    result = subprocess.run(
        [
            sys.executable,
            str(LAUNCHER),
            str(folder),
            "-o",
            str(out),
            "--skip-existing",
            "--device",
            "cpu",
            "--quiet",
            "--model",
            str(DEMO_MODEL),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"skipping {len(finished)} image(s)" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.png" for i in range(6)]
