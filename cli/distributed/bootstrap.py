"""The one function Ray ships to its workers (by value): import the pack there, run a task.

Ray pickles functions of importable modules by reference, and the pack is imported under a
name of our choosing (paragonsr2.py, like ComfyUI) that a fresh worker process does not know.
So this module is registered to be pickled by value, and the function imports the pack from
its folder (the same path on every machine) before the real task (worker.py) runs.
Arguments and results are plain Python values, so unpickling them needs no pack.
"""

from __future__ import annotations


def run_task(pack_root: str, pack_name: str, kind: str, job: dict, item: dict, payload=None) -> dict:
    import importlib
    import importlib.util
    import sys

    if pack_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            pack_name, f"{pack_root}/__init__.py", submodule_search_locations=[pack_root]
        )
        assert spec is not None and spec.loader is not None  # a file path always gives both
        module = importlib.util.module_from_spec(spec)
        sys.modules[pack_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[pack_name]
            raise
    worker = importlib.import_module(f"{pack_name}.cli.distributed.worker")
    return worker.run(kind, job, item, payload)
