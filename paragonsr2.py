#!/usr/bin/env python3
"""Command-line launcher for the ParagonSR2 pack (outside ComfyUI): ``python paragonsr2.py --help``.

ComfyUI imports only the pack's ``__init__.py``; this file is never imported by it. The pack is
imported here as a package from its folder (whatever the folder is called), the way ComfyUI
does, so every import inside the pack stays relative.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent
PACK_NAME = "paragonsr2_pack"


def import_pack(name: str = PACK_NAME):
    """The pack as a package named ``name`` (imported once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def submodule(dotted: str, name: str = PACK_NAME):
    """A module of the pack, e.g. ``submodule("paragonsr2_arch")``."""
    import_pack(name)
    return importlib.import_module(f"{name}.{dotted}")


REQUIRED = ("torch", "numpy", "safetensors", "PIL")


def missing_requirements() -> list[str]:
    """Packages the command line cannot start without that this interpreter lacks."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def interpreter_hint(missing: list[str]) -> str:
    """One line: what is missing and which interpreter to use instead."""
    names = ", ".join("pillow" if name == "PIL" else name for name in missing)
    venv = PACK_ROOT / ".venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    setup, demo, me = PACK_ROOT / "scripts" / "setup_env.sh", PACK_ROOT / "scripts" / "demo.sh", Path(__file__).name
    if venv.is_file() and Path(sys.executable).absolute() == venv.absolute():
        use = f"the environment is incomplete (or site-packages are off): rerun 'bash {setup}'"
    elif venv.is_file():
        use = f"run it with the pack's environment: {venv} {me} ..."
    else:
        use = (
            f"make the pack's environment with 'bash {setup}' (or try 'bash {demo}'), "
            f"then run .venv/bin/python {me} ..."
        )
    return f"paragonsr2: this Python ({sys.executable}) has no {names}; {use}"


if __name__ == "__main__":
    absent = missing_requirements()
    if absent:  # before importing the pack: a traceback from deep inside it would not say what to do
        print(interpreter_hint(absent), file=sys.stderr)
        sys.exit(2)
    sys.exit(submodule("cli").main())
