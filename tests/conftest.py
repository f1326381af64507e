import pytest

from packlib import import_pack, reference_cases, submodule

import_pack()  # once, before test modules import from it


def pytest_generate_tests(metafunc):
    if "reference_case" in metafunc.fixturenames:
        cases = reference_cases()
        metafunc.parametrize("reference_case", cases, ids=[c["case"] for c in cases])


@pytest.fixture(scope="session")
def pack():
    return import_pack()


@pytest.fixture(scope="session")
def arch(pack):
    return submodule("paragonsr2_arch")
