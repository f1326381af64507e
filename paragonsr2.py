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


if __name__ == "__main__":
    sys.exit(submodule("cli").main())
