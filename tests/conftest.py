import os

import pytest
import torch

from packlib import import_pack, reference_cases

# Once, before any test module is imported: registers the pack as the package `paragonsr2_pack`,
# so test modules can write `from paragonsr2_pack.engines.tiling import runner`.
import_pack()


def _share_cores_between_workers() -> None:
    """Under pytest-xdist every worker would start one torch thread per core; n workers then run
    n times more threads than cores, and each OpenMP region waits for descheduled threads.
    Give every worker its share of the cores instead (results do not depend on thread count
    beyond float summation order, which the tolerances already cover)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // workers))


_share_cores_between_workers()

SLOW_REASON = "slow: run with --slow or -m slow (scripts/test.sh runs the slow tests in its second pass)"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    """Plain `pytest` skips slow tests, with the reason shown; `-m ...`, `--slow` or naming a test
    (`file.py::test`) runs them. Skipped, not deselected, so nobody mistakes them for gone."""
    if config.getoption("--slow") or config.option.markexpr or any("::" in arg for arg in config.args):
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    if "reference_case" in metafunc.fixturenames:
        # @pytest.mark.slow_cases("photo", "pro") marks the reference cases of those variants slow
        marker = metafunc.definition.get_closest_marker("slow_cases")
        slow_variants = set(marker.args) if marker else set()
        cases = [
            pytest.param(c, id=c["case"], marks=[pytest.mark.slow] if c["variant"] in slow_variants else [])
            for c in reference_cases()
        ]
        metafunc.parametrize("reference_case", cases)


@pytest.fixture(scope="session")
def pack():
    return import_pack()


@pytest.fixture(scope="session")
def arch(pack):
    from paragonsr2_pack import paragonsr2_arch

    return paragonsr2_arch
