"""The pack imports as ComfyUI imports it: a package of any name, no ComfyUI, relative imports."""

import subprocess
import sys
import textwrap

from packlib import PACK_ROOT

SCRIPT = textwrap.dedent("""
    import importlib.util, sys, types
    # ComfyUI owns top-level modules with these names; plant impostors that explode on use.
    for name in ("nodes", "utils", "server", "engines", "paragonsr2_arch"):
        sys.modules[name] = types.ModuleType(name)
    spec = importlib.util.spec_from_file_location(
        "ComfyUI-ParagonSR2", {root!r} + "/__init__.py", submodule_search_locations=[{root!r}])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = pack
    spec.loader.exec_module(pack)
    assert pack.NODE_CLASS_MAPPINGS is not None
    # Without ComfyUI the V3 node classes stand on the pack's own stand-in io.
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS) >= {{
        "ParagonSR2Loader", "ParagonSR2Upscale", "ParagonSR2VideoUpscale"}}
    comfy_io = sys.modules[spec.name + ".nodes.comfy_io"]
    assert not comfy_io.IN_COMFYUI_API and comfy_io.io.__name__.endswith(".nodes.io_standin")
    # Every module of the pack imports without optional dependencies.
    import importlib, pkgutil
    for info in pkgutil.walk_packages(pack.__path__, spec.name + "."):
        if not info.name.split(".")[1] in ("tests", "benchmarks", "scripts", "example_workflows"):
            importlib.import_module(info.name)
    for bad in ("comfy", "comfy_api", "folder_paths", "tensorrt", "onnxruntime"):
        assert bad not in sys.modules, bad + " was imported"
    ours = [m for m in sys.modules if m.startswith("ComfyUI-ParagonSR2.")]
    assert any(m.endswith(".paragonsr2_arch") for m in ours), ours
    for name in ("nodes", "engines", "paragonsr2_arch"):
        assert not hasattr(sys.modules[name], "__file__"), name + " was imported as a top-level module"
    print("OK", len(ours))
""")


def test_pack_imports_as_a_package_without_comfyui():
    code = SCRIPT.format(root=str(PACK_ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK")
