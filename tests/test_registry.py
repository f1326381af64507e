"""Registry and discovery: what the Comfy registry archive keeps (.comfyignore), the example
workflows' thumbnails and node properties, the nodes' search aliases, and the pyproject fields
comfy-cli reads. (.ci/registry.sh runs the real comfy-cli: validate and pack.)"""

from __future__ import annotations

import json
import re
import subprocess
import warnings

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 needs tomli to read pyproject.toml")

from packlib import PACK_ROOT, import_pack

PYPROJECT = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
WORKFLOWS = sorted((PACK_ROOT / "example_workflows").glob("*.json"))
DEMO_MODEL = "models/ParagonSR2_realtime_x2_demo.safetensors"

# comfy-cli 1.23.0, comfy_cli/registry/config_parser.py: the only values it accepts (any other
# is dropped with a warning, and the registry then shows no OS / accelerator).
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")
ACCELERATORS = {
    "GPU :: NVIDIA CUDA",
    "GPU :: AMD ROCm",
    "GPU :: Intel Arc",
    "NPU :: Huawei Ascend",
    "GPU :: Apple Metal",
}
VERSION_PART = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")


def repository_files() -> list[str]:
    """What `git add` would commit: tracked files plus new ones that are not ignored (comfy-cli
    archives git-tracked files; new files are checked as if already committed)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PACK_ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"not a git checkout, or git is missing ({exc}): the archive is made from git's file list")
    return [f for f in out.splitlines() if f and (PACK_ROOT / f).is_file()]


@pytest.fixture(scope="module")
def archive():
    """(kept, left out) by .comfyignore, matched the way comfy-cli matches it."""
    pathspec = pytest.importorskip("pathspec", reason="pathspec (comfy-cli's matcher) is not installed")
    lines = (PACK_ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    with warnings.catch_warnings():  # pathspec 1.x deprecates the name comfy-cli still uses
        warnings.simplefilter("ignore", DeprecationWarning)
        spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    files = repository_files()
    left_out = {f for f in files if spec.match_file(f)}
    return set(files) - left_out, left_out


def test_archive_leaves_out_tests_benchmarks_training_and_ci(archive):
    kept, left_out = archive
    for folder in ("tests/", "benchmarks/", "training/", ".ci/"):
        assert not [f for f in kept if f.startswith(folder)], folder
    assert {"tests/conftest.py", "benchmarks/scene_cuts.py", ".ci/run", "requirements-dev.txt"} <= left_out
    assert any(f.startswith("training/") for f in left_out)


def test_archive_keeps_everything_comfyui_runs(archive):
    kept, _ = archive
    assert DEMO_MODEL in kept
    assert {"__init__.py", "pyproject.toml", "LICENSE", "README.md", "requirements.txt", "assets/icon.png"} <= kept
    # every module of the pack (what ComfyUI imports) and every example workflow + thumbnail
    for folder in ("paragonsr2_arch/", "engines/", "nodes/", "example_workflows/", "docs/"):
        tracked = [f for f in repository_files() if f.startswith(folder)]
        assert tracked and all(f in kept for f in tracked), folder
    assert all(f"example_workflows/{w.name}" in kept for w in WORKFLOWS)


def _thumbnail(workflow):
    return next((p for p in (workflow.with_suffix(".jpg"), workflow.with_suffix(".webp")) if p.is_file()), None)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_workflow_has_a_thumbnail(workflow):
    from PIL import Image

    thumb = _thumbnail(workflow)
    assert thumb is not None, f"no {workflow.stem}.jpg / .webp beside {workflow.name}"
    with Image.open(thumb) as im:
        im.load()  # a complete, decodable image
        assert im.width == im.height >= 256
        assert im.convert("L").getextrema()[1] - im.convert("L").getextrema()[0] > 100  # not blank


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_workflow_nodes_carry_registry_ids(workflow):
    ours = set(import_pack().NODE_CLASS_MAPPINGS)
    nodes = json.loads(workflow.read_text(encoding="utf-8"))["nodes"]
    mine = [n for n in nodes if n["type"] in ours]
    assert mine
    for node in mine:
        props = node.get("properties", {})
        assert props.get("cnr_id") == PYPROJECT["project"]["name"], node["type"]
        assert props.get("ver") == PYPROJECT["project"]["version"], node["type"]
        assert props.get("Node name for S&R") == node["type"]


def _aliases(cls) -> list:
    return cls.define_schema().search_aliases


def test_every_node_has_search_aliases():
    from paragonsr2_pack.nodes import comfy_io

    if not comfy_io.HAS_SEARCH_ALIASES:
        pytest.skip("this comfy_api's Schema has no search_aliases (ComfyUI 0.3.64): the nodes leave them out")
    mappings = import_pack().NODE_CLASS_MAPPINGS
    for name, cls in mappings.items():
        aliases = _aliases(cls)
        assert isinstance(aliases, list) and aliases, name  # served as a JSON list
        assert all(isinstance(a, str) and a == a.strip().lower() and a for a in aliases), name
        assert len(set(aliases)) == len(aliases), name
        assert {"sr", "super resolution", "paragonsr2"} & set(aliases), name
    assert "upscale" in _aliases(mappings["ParagonSR2Upscale"])
    assert "video upscale" in _aliases(mappings["ParagonSR2VideoUpscale"])


def test_only_the_tensorrt_node_is_experimental():
    mappings = import_pack().NODE_CLASS_MAPPINGS
    experimental = {name for name, cls in mappings.items() if cls.define_schema().is_experimental}
    assert experimental == {"ParagonSR2BuildTensorRTEngine"}


def test_pyproject_registry_fields():
    project, comfy = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
    classifiers = project["classifiers"]
    oses = [c.removeprefix("Operating System :: ") for c in classifiers if c.startswith("Operating System :: ")]
    accelerators = [c.removeprefix("Environment :: ") for c in classifiers if c.startswith("Environment ::")]
    assert oses and all(o.startswith(OS_PREFIXES) for o in oses)
    assert accelerators and set(accelerators) <= ACCELERATORS
    assert all(VERSION_PART.match(part.strip()) for part in comfy["requires-comfyui"].split(","))
    assert VERSION_PART.match(project["version"])
    urls = project["urls"]
    repo = urls["Repository"].rstrip("/")
    assert urls["Documentation"].startswith(repo + "/")
    assert urls["Bug Tracker"] == urls["Issues"] == repo + "/issues"
    owner_name = repo.removeprefix("https://github.com/")
    assert comfy["Icon"] == f"https://raw.githubusercontent.com/{owner_name}/main/assets/icon.png"


def test_icon_is_a_small_square_png():
    from PIL import Image

    with Image.open(PACK_ROOT / "assets" / "icon.png") as im:
        assert im.format == "PNG"
        assert im.width == im.height and 64 <= im.width <= 400
