"""Which ComfyUI installs to test against, and a real server for each (see the package docstring)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .client import ComfyClient

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER = "ComfyUI-ParagonSR2"  # the folder name users' custom_nodes has
PROBE_FOLDER = "paragonsr2_test_probe"
PROBE_NODES = Path(__file__).resolve().parent / "probe_nodes"
STARTUP_TIMEOUT = 240  # seconds; 8-17 s is usual here, more while other jobs load the cores
BASE_FOLDERS = ("custom_nodes", "input", "output", "models/upscale_models", "models/paragonsr2")
NO_INSTALL_REASON = (
    "no ComfyUI to test against: set COMFYUI_DIR (and COMFYUI_PYTHON, its interpreter) to a ComfyUI "
    "checkout, or COMFYUI_SERVERS='DIR=PYTHON;DIR=PYTHON' for several; .ci/comfyui.sh builds them "
    "from the snapshots (CONTRIBUTING.md, 'Real ComfyUI')"
)


@dataclass(frozen=True)
class Install:
    """A ComfyUI checkout and the interpreter that runs it."""

    checkout: Path
    python: str

    @property
    def version(self) -> str:
        text = (self.checkout / "comfyui_version.py").read_text(encoding="utf-8")
        match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
        return match.group(1) if match else "unknown"

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", self.version)[:3])

    def usable(self) -> bool:
        return (self.checkout / "main.py").is_file() and Path(self.python).exists()


def configured_installs() -> list[Install]:
    """COMFYUI_SERVERS ('DIR[=PYTHON];...') then COMFYUI_DIR/COMFYUI_PYTHON; PYTHON defaults to
    this interpreter."""
    found = []
    for item in os.environ.get("COMFYUI_SERVERS", "").split(";"):
        checkout, _, python = item.strip().partition("=")
        if checkout:
            found.append(Install(Path(checkout), python or sys.executable))
    if os.environ.get("COMFYUI_DIR"):
        found.append(Install(Path(os.environ["COMFYUI_DIR"]), os.environ.get("COMFYUI_PYTHON") or sys.executable))
    return found


def install_params() -> list:
    """pytest params, one per configured install (id ``comfyui-<version>``); one skipped param
    saying why when there is none or an install is incomplete. Every param carries the
    ``comfyui`` marker, so a test that uses them is one that .ci/comfyui.sh (``-m comfyui``) runs
    on each version, marked or not."""
    comfyui = pytest.mark.comfyui
    params = []
    for install in configured_installs():
        if install.usable():
            params.append(pytest.param(install, id=f"comfyui-{install.version}", marks=comfyui))
        else:
            reason = f"no ComfyUI checkout at {install.checkout} or no interpreter {install.python}"
            skip = pytest.mark.skip(reason=reason)
            params.append(pytest.param(None, id=f"missing-{install.checkout.name}", marks=[skip, comfyui]))
    if not params:
        params.append(pytest.param(None, id="no-comfyui", marks=[pytest.mark.skip(reason=NO_INSTALL_REASON), comfyui]))
    return params


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_base(base: Path, probe: bool = True) -> Path:
    """A throw-away --base-directory: the folders ComfyUI uses, custom_nodes holding links to this
    pack (under the folder name users have) and, with ``probe``, to the test-only nodes."""
    for sub in BASE_FOLDERS:
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(PACK_ROOT, target_is_directory=True)
    if probe:
        (base / "custom_nodes" / PROBE_FOLDER).symlink_to(PROBE_NODES, target_is_directory=True)
    return base


@dataclass
class ComfyServer(ComfyClient):
    """A running server (see ComfyClient for the calls). ``prepared``: what the module's prepare
    function returned (models and images it made, for computing expected results)."""

    install: Install
    base: Path
    port: int
    log_path: Path
    prepared: dict = field(default_factory=dict)

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"http://127.0.0.1:{self.port}"

    @property
    def version(self) -> str:
        return self.install.version

    def at_least(self, *version: int) -> bool:
        """True on this version or newer, e.g. ``server.at_least(0, 33)``."""
        return self.install.version_tuple >= version

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def start_server(install: Install, base: Path, extra_args: tuple[str, ...] = ()) -> Iterator[ComfyServer]:
    """``main.py --cpu`` on a free loopback port with ``base`` as its base directory, until it
    answers /system_stats; stopped (its whole process group) on exit."""
    port = free_port()
    log_path = base / "server.log"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    args = [install.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)]
    args += ["--disable-auto-launch", "--base-directory", str(base), *extra_args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, cwd=install.checkout, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = ComfyServer(install=install, base=base, port=port, log_path=log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI {install.version} exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
            try:
                server.get("/system_stats", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not answer in {STARTUP_TIMEOUT} s:\n{server.log_text()[-4000:]}")
                time.sleep(0.5)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the session we started: the server and its children
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def server_fixture(
    prepare: Callable[[Path], dict | None] | None = None,
    extra_args: Callable[[Path], tuple[str, ...]] | tuple[str, ...] = (),
    probe: bool = True,
):
    """A module-scoped pytest fixture giving a ComfyServer, parametrised over the configured
    installs: one server per ComfyUI version per test module. ``prepare(base)`` fills the base
    directory (models, input images) before the server starts; its dict becomes
    ``server.prepared``. ``extra_args``: more main.py arguments (or a function of ``base``)."""

    @pytest.fixture(scope="module", params=install_params())
    def comfyui_server(request, tmp_path_factory):
        install: Install = request.param
        base = make_base(tmp_path_factory.mktemp(f"comfyui-{install.version}-"), probe=probe)
        prepared = (prepare(base) if prepare else None) or {}
        args = extra_args(base) if callable(extra_args) else tuple(extra_args)
        with start_server(install, base, args) as server:
            server.prepared = prepared
            yield server

    return comfyui_server
