"""The command line end to end on real images and real model files."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from packlib import PACK_ROOT
from paragonsr2_pack import cli
from paragonsr2_pack.engines.backends import torch_engine
from paragonsr2_pack.engines.tiling import runner as tiling

SAMPLE = PACK_ROOT / "assets" / "chelsea.png"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, arch):
    torch.manual_seed(0)
    model = arch.build_model("realtime", 2)
    with torch.no_grad():  # a non-trivial residual so the network path shows in the output
        model.detail_gain.fill_(0.5)
    return arch.save_model(model, tmp_path_factory.mktemp("model") / "realtime_x2.safetensors")


@pytest.fixture
def small_image(tmp_path):
    """A real photograph (the bundled sample), cropped small to keep the test fast."""
    path = tmp_path / "cat.png"
    with Image.open(SAMPLE) as im:
        im.crop((150, 60, 150 + 72, 60 + 56)).save(path)
    return path


def library_result(model_path, image_path, arch):
    """What the library gives for the same file: uint8 HWC."""
    with Image.open(image_path) as im:
        x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)[None]
    engine = torch_engine.TorchEngine(arch.load_model(model_path), device="cpu", precision="fp32")
    out = tiling.upscale_image(engine, x)[0]
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def test_launcher_upscales_an_image_like_the_library(tmp_path, small_image, model_file, arch):
    out = tmp_path / "out" / "cat_x2.png"
    result = subprocess.run(
        [
            sys.executable,
            str(PACK_ROOT / "paragonsr2.py"),
            str(small_image),
            "-o",
            str(out),
            "--model",
            str(model_file),
            "--device",
            "cpu",
            "--tile",
            "32",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and " s" in result.stdout
    with Image.open(out) as im:
        assert im.size == (144, 112)
        got = np.asarray(im.convert("RGB")).astype(np.int16)
    expected = library_result(model_file, small_image, arch).astype(np.int16)
    assert np.abs(got - expected).max() <= 1  # identical up to 8-bit rounding


def test_never_overwrites_the_input(tmp_path, small_image, model_file):
    before = small_image.read_bytes()
    code = cli.main(
        [
            str(small_image),
            "-o",
            str(small_image),
            "--model",
            str(model_file),
            "--overwrite",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code != 0
    assert small_image.read_bytes() == before


def test_default_output_name_is_fresh_and_existing_outputs_are_kept(tmp_path, small_image, model_file, capsys):
    args = [str(small_image), "--model", str(model_file), "--device", "cpu", "--quiet"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    first, second = tmp_path / "cat_ParagonSR2_x2.png", tmp_path / "cat_ParagonSR2_x2_1.png"
    assert first.is_file() and second.is_file()
    assert first.read_bytes() == second.read_bytes()
    stamp = first.read_bytes()
    assert cli.main(args[:1] + ["-o", str(first)] + args[1:]) == 2  # exists, no --overwrite: refused up front
    assert first.read_bytes() == stamp
    assert "already exists" in capsys.readouterr().err


def test_bad_model_path_fails_clearly(tmp_path, small_image, capsys):
    missing = tmp_path / "nope.safetensors"
    assert cli.main([str(small_image), "--model", str(missing), "--quiet"]) == 1
    assert "model file not found" in capsys.readouterr().err
    not_a_model = tmp_path / "junk.safetensors"
    not_a_model.write_bytes(b"this is not a model")
    assert cli.main([str(small_image), "--model", str(not_a_model), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot load model" in err and "junk.safetensors" in err
    assert not list(tmp_path.glob("cat_ParagonSR2*"))


def test_folder_of_images_including_grey_and_alpha(tmp_path, small_image, model_file):
    folder = tmp_path / "in"
    folder.mkdir()
    with Image.open(small_image) as im:
        im.save(folder / "a.png")
        im.convert("L").save(folder / "b.png")
        rgba = im.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert cli.main([str(folder), "-o", str(out), "--model", str(model_file), "--device", "cpu", "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.png", "b.png", "c.png"]
    with Image.open(out / "c.png") as im:
        assert im.mode == "RGBA" and im.size == (144, 112)
        assert abs(int(np.asarray(im)[..., 3].mean()) - 128) <= 1
    with Image.open(out / "a.png") as a, Image.open(small_image) as src:
        assert a.size == (2 * src.size[0], 2 * src.size[1])


def test_video_without_pyav_says_how_to_install_it(tmp_path, model_file, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes "import av" fail as if PyAV were absent
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 16)
    assert cli.main([str(video), "--model", str(model_file), "--quiet"]) == 1
    assert "pip install av" in capsys.readouterr().err


def test_video_file_is_upscaled_frame_by_frame(tmp_path, small_image, model_file):
    av = pytest.importorskip("av", reason="PyAV (pip install av) is needed for video files")
    frames = _write_test_video(tmp_path / "clip.mp4", small_image)
    out = tmp_path / "clip_x2.mp4"
    code = cli.main(
        [
            str(tmp_path / "clip.mp4"),
            "-o",
            str(out),
            "--model",
            str(model_file),
            "--device",
            "cpu",
            "--quiet",
            "--frames-per-chunk",
            "2",
        ]
    )
    assert code == 0
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == frames
    assert decoded[0].shape == (112, 144, 3)


def _write_test_video(path, image_path, frames=5):
    import av

    with Image.open(image_path) as im:
        rgb = np.asarray(im.convert("RGB"))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(rgb, i, axis=1)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


def test_unknown_command_line_usage_fails():
    with pytest.raises(SystemExit) as exc:
        cli.main(["upscale"])  # missing input
    assert exc.value.code == 2


def test_export_onnx_writes_a_graph_that_matches_the_model(tmp_path, model_file, arch):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime checks the exported graph")
    out = tmp_path / "m.onnx"
    assert cli.main(["export-onnx", "--model", str(model_file), "-o", str(out)]) == 0
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = arch.load_model(model_file)(x).numpy()
    assert got.shape == (1, 3, 64, 96)
    assert np.abs(got - expected).max() < 1e-4
    assert cli.main(["export-onnx", "--model", str(model_file), "-o", str(out)]) == 2  # exists: refused


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_build_trt_without_a_gpu_says_what_is_missing(model_file, tmp_path, capsys):
    code = cli.main(["build-trt", "--model", str(model_file), "--models-dir", str(tmp_path)])
    assert code == 1
    assert "cannot build a TensorRT engine here" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.engine"))


@pytest.mark.parametrize(
    "value,message",
    [("2.5", "sharpness 2.5 is outside 0..2"), ("-0.1", "outside 0..2"), ("sharp", "must be 'auto' or a number")],
)
def test_sharpness_outside_what_the_loader_node_accepts_is_refused(
    tmp_path, small_image, model_file, capsys, value, message
):
    with pytest.raises(SystemExit) as exc:
        cli.main([str(small_image), "--model", str(model_file), "--sharpness", value, "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--sharpness" in err and message in err
    assert not list(tmp_path.glob("cat_ParagonSR2*"))


def test_sharpness_in_range_reaches_the_model(tmp_path, small_image, model_file):
    out = tmp_path / "sharp.png"
    assert (
        cli.main(
            [
                str(small_image),
                "-o",
                str(out),
                "--model",
                str(model_file),
                "--sharpness",
                "2",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    plain = tmp_path / "plain.png"
    assert cli.main([str(small_image), "-o", str(plain), "--model", str(model_file), "--device", "cpu", "--quiet"]) == 0
    assert out.read_bytes() != plain.read_bytes()


def _pack_imports(path):
    """(module, imported names) of every relative import in ``path``, modules as dotted paths
    inside the pack ('cli.jobs'); 'from . import x' counts as importing module 'cli.x'."""
    import ast

    rel = path.relative_to(PACK_ROOT).with_suffix("")
    parts = list(rel.parts[:-1])  # the package the module is in (for __init__: the package itself)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:
                found += [(f"{target}.{a.name}" if target else a.name, []) for a in node.names]
            else:
                found.append((target, [a.name for a in node.names]))
    return found


def test_cli_has_no_import_cycle_and_no_private_imports_from_other_folders():
    """cli/ (the command line and its Ray layer): the module graph is acyclic, and no module
    imports another folder's private (_underscore) names."""
    modules = {}
    for path in sorted((PACK_ROOT / "cli").rglob("*.py")):
        rel = path.relative_to(PACK_ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        folder = path.parent
        for target, names in _pack_imports(path):
            if target in modules:
                graph[name].add(target)
            target_folder = PACK_ROOT.joinpath(*target.split(".")[:-1]) if target not in modules else None
            for imported in names:
                sub = f"{target}.{imported}"
                if sub in modules:
                    graph[name].add(sub)
                elif imported.startswith("_"):
                    where = modules.get(target, target_folder)
                    where_folder = where.parent if where is not None and where.suffix == ".py" else where
                    assert where_folder == folder, f"{name} imports the private name {imported} of {target}"
    # Imports inside functions count too (they would make a circle at run time as well), but a
    # package's __init__ re-exporting its own modules is not a circle of jobs.
    state: dict = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if nxt == node.rsplit(".", 1)[0] and node.startswith(nxt + "."):
                continue
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
