"""comfy-import-guard (PyPI) over the comfy.* uses in the pack's shipped files, against one ComfyUI
snapshot: exit 1 on a real break, 0 otherwise.

Usage: python .ci/import_guard.py SNAPSHOT_GIT_DIR [GUARD_EXECUTABLE]

Shipped files: what git would commit (tracked plus new unignored files) minus .comfyignore, i.e.
what the registry archive holds (.ci/registry.sh checks that archive). The guard reads ComfyUI
through a git clone in its cache folder; here that clone is an empty repository whose objects
come from the snapshot (git alternates: nothing is written into the snapshot) with HEAD at the
snapshot's commit, and the guard runs --offline against HEAD.

A "real break" is every reference the guard calls breaking except one: ``getattr(module, "name",
default)`` with a default is feature detection (the pack runs on versions with and without the
name), which the guard 1.3.0 still reports as MISSING; those are listed as guarded instead.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_FOLDER = "ComfyUI-ParagonSR2"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.comfyignore's patterns as gitwildmatch uses them here: '/x/' a folder at the root, '/x' a
    root-level name (globs allowed), anything else a glob on the path or its last part."""
    for pattern in patterns:
        anchored, folder = pattern.startswith("/"), pattern.endswith("/")
        body = pattern.strip("/")
        if folder:
            if path.startswith(body + "/") if anchored else f"/{body}/" in f"/{path}":
                return True
        elif fnmatch.fnmatchcase(path, body) if anchored else fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], body):
            return True
    return False


def shipped_python_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    lines = (ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return sorted(
        f for f in listed.split("\0") if f.endswith(".py") and (ROOT / f).is_file() and not _ignored(f, patterns)
    )


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _has_default(file: Path, line: int) -> bool:
    """True when the getattr(...) call on ``line`` of ``file`` passes a default."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and node.lineno == line
        and len(node.args) >= 3
        for node in ast.walk(tree)
    )


def main(snapshot: str, guard: str = "comfy-import-guard") -> int:
    with tempfile.TemporaryDirectory(prefix="paragonsr2-guard-") as tmp:
        work = Path(tmp)
        pack = work / "comfy" / "custom_nodes" / PACK_FOLDER
        files = shipped_python_files()
        for name in files:
            (pack / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, pack / name)
        clone = work / "cache" / "ComfyUI"
        clone.mkdir(parents=True)
        _git("init", "-q", cwd=clone)
        objects = Path(_git("rev-parse", "--git-path", "objects", cwd=Path(snapshot))).resolve()
        if not objects.is_absolute() or not objects.is_dir():
            objects = (Path(snapshot) / "objects").resolve()
        (clone / ".git" / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        head = _git("rev-parse", "HEAD", cwd=Path(snapshot))
        _git("update-ref", "HEAD", head, cwd=clone)
        version = _git("show", "HEAD:comfyui_version.py", cwd=clone).split('"')[1]
        answer = subprocess.run(
            [guard, "check", "--offline", "--quiet", "--json", "--cache-dir", str(work / "cache")]
            + ["--comfy-dir", str(work / "comfy"), "--target", "HEAD", "--pack", PACK_FOLDER],
            capture_output=True,
            text=True,
        )
        if answer.returncode not in (0, 1) or not answer.stdout.strip():
            print(f"comfy-import-guard failed to run ({answer.returncode}):\n{answer.stderr}", file=sys.stderr)
            return 2
        report = json.loads(answer.stdout)["packs"][0]

    breaks, guarded = [], []
    for row in report["breaking"]:
        where = f"{row['dotted']} ({row['status']}) at {row['file']}:{row['line']}"
        if row["kind"] == "getattr" and _has_default(ROOT / row["file"], row["line"]):
            guarded.append(where)
        else:
            breaks.append(f"{where}: {row['detail']}")
    print(
        f"comfy-import-guard vs ComfyUI {version} ({head[:9]}): {len(files)} shipped Python files, "
        f"{report['references']} comfy.* references, {len(breaks)} breaking"
    )
    for where in guarded:
        print(f"  guarded (getattr with a default, feature detection): {where}")
    for key in ("soft", "unresolvable", "signature_drift", "unparseable"):
        for row in report.get(key, []):
            print(f"  note ({key}): {json.dumps(row)}")
    for line in breaks:
        print(f"  BREAKS: {line}", file=sys.stderr)
    return 1 if breaks else 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    sys.exit(main(*sys.argv[1:]))
