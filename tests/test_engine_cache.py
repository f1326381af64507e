"""TensorRT engine cache: keys change exactly when they must; writes are atomic; concurrent
writers of one key never leave a torn file; engines of another GPU/TensorRT are not loaded."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
import torch

from paragonsr2_pack.engines.backends import engine_cache as ec

FACTS = dict(tensorrt_version="10.13.0", gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9", video=False)


@pytest.fixture(scope="module")
def graphs(arch):
    pytest.importorskip("onnx")
    from paragonsr2_pack.engines.backends import onnx_export as ox

    model = arch.build_model("realtime", 2)
    other = arch.build_model("realtime", 2)
    with torch.no_grad():
        other.conv_in.weight[0, 0, 0, 0] += 1e-3  # one weight differs
    sharper = arch.build_model("realtime", 2)
    sharper.load_state_dict(model.state_dict())
    sharper.upsampler_alpha = 0.5
    return {
        "base": ox.export_onnx(model),
        "base_again": ox.export_onnx(model),
        "weights": ox.export_onnx(other),
        "fp16": ox.export_onnx(model, precision="fp16"),
        "video": ox.export_onnx(model, video=True),
        "sharpness": ox.export_onnx(sharper),
    }


def _key(onnx_bytes, profile=None, **changes):
    facts = {**FACTS, **changes}
    return ec.engine_key(ec.engine_facts(onnx_bytes, profile or ec.Profile(), **facts))


def test_key_is_stable_for_the_same_model(graphs):
    assert graphs["base"] == graphs["base_again"]  # export is deterministic
    assert _key(graphs["base"]) == _key(graphs["base_again"])


@pytest.mark.parametrize("what", ["weights", "fp16", "video", "sharpness"])
def test_key_changes_with_the_graph(graphs, what):
    assert _key(graphs[what]) != _key(graphs["base"])


@pytest.mark.parametrize(
    "change",
    [
        {"tensorrt_version": "11.0.0"},
        {"gpu_name": "NVIDIA GeForce RTX 3090"},
        {"compute_capability": "8.6"},
        {"video": True},
    ],
)
def test_key_changes_with_environment(graphs, change):
    assert _key(graphs["base"], **change) != _key(graphs["base"])


@pytest.mark.parametrize(
    "profile",
    [
        ec.Profile(64, 512, 1024, 1, 1, 2),
        ec.Profile(32, 512, 1024),
        ec.Profile(64, 256, 1024),
        ec.Profile(64, 512, 2048),
    ],
)
def test_key_changes_with_profile(graphs, profile):
    assert _key(graphs["base"], profile) != _key(graphs["base"])


def test_profile_validation():
    assert ec.Profile().shapes(3) == ((1, 3, 64, 64), (1, 3, 512, 512), (1, 3, 1024, 1024))
    for bad in [(60, 512, 1024), (64, 32, 1024), (64, 512, 1024, 2, 1, 1), (0, 16, 16)]:
        with pytest.raises(ValueError):
            ec.Profile(*bad)


def test_atomic_write_survives_crash_mid_write(tmp_path):
    target = tmp_path / "e.engine"
    target.write_bytes(b"OLD ENGINE")
    payload = os.urandom(1 << 16)

    def crashing_writer(handle, data):
        handle.write(data[: len(data) // 2])
        handle.flush()
        raise OSError(28, "No space left on device")  # a full disk halfway through

    with pytest.raises(OSError, match="No space"):
        ec.atomic_write_bytes(target, payload, writer=crashing_writer)
    assert target.read_bytes() == b"OLD ENGINE"  # the previous file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.engine"]  # no temp left behind

    ec.atomic_write_bytes(target, payload)
    assert target.read_bytes() == payload


def test_crash_before_first_write_leaves_no_file(tmp_path):
    def crashing_writer(handle, data):
        handle.write(data[:10])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ec.atomic_write_bytes(tmp_path / "new.engine", b"x" * 100, writer=crashing_writer)
    assert list(tmp_path.iterdir()) == []


def test_store_and_load_roundtrip_and_refusals(graphs, tmp_path):
    cache = ec.EngineCache(ec.cache_dir(tmp_path))
    assert cache.folder == tmp_path / "tensorrt" / "paragonsr2"
    facts = ec.engine_facts(graphs["base"], ec.Profile(), **FACTS)
    assert cache.load(facts, "rt") is None
    with cache.lock(facts, "rt"):
        path = cache.store(facts, b"ENGINE-BYTES", "rt")
    assert path.parent == cache.folder and path.suffix == ".engine"
    assert cache.load(facts, "rt") == b"ENGINE-BYTES"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["facts"] == facts and sidecar["facts"]["gpu_name"] == FACTS["gpu_name"]

    # Another GPU or TensorRT version never finds it (different key) ...
    other = ec.engine_facts(graphs["base"], ec.Profile(), **{**FACTS, "tensorrt_version": "11.0.0"})
    assert cache.load(other, "rt") is None
    # ... and a file copied over by hand under this key, but built elsewhere, is refused.
    engine_path, sidecar_path = cache.paths(other, "rt")
    engine_path.write_bytes(b"FOREIGN")
    sidecar_path.write_text(json.dumps({"facts": facts, "engine_sha256": "0"}))
    assert cache.load(other, "rt") is None
    # A damaged engine (bytes not matching the sidecar's hash) is refused.
    path.write_bytes(b"ENGINE-BYT")
    assert cache.load(facts, "rt") is None


def _concurrent_writer(folder: str, index: int, facts: dict, start) -> None:
    cache = ec.EngineCache(folder)
    start.wait()
    for _ in range(20):
        with cache.lock(facts, "rt"):
            cache.store(facts, bytes([index]) * 200_000, "rt")


def test_concurrent_builders_of_one_key_never_tear(graphs, tmp_path):
    facts = ec.engine_facts(graphs["base"], ec.Profile(), **FACTS)
    ctx = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_concurrent_writer, args=(str(tmp_path), i + 1, facts, start)) for i in range(3)]
    for p in procs:
        p.start()
    start.set()
    cache = ec.EngineCache(tmp_path)
    seen = set()
    while any(p.is_alive() for p in procs):
        data = cache.load(facts, "rt")  # readers never lock: they must never see a torn file
        if data is not None:
            assert len(set(data)) == 1 and len(data) == 200_000
            seen.add(data[0])
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = cache.load(facts, "rt")
    assert final is not None and len(set(final)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".lock"))]


def test_stale_lock_is_taken_over(tmp_path):
    lock_path = tmp_path / "k.lock"
    lock_path.write_text("12345\n")
    os.utime(lock_path, (0, 0))  # from 1970: its owner is long gone
    with ec.KeyLock(lock_path, timeout=1):
        assert lock_path.exists()
    assert not lock_path.exists()


def test_held_lock_times_out(tmp_path):
    with (
        ec.KeyLock(tmp_path / "k.lock", timeout=1),
        pytest.raises(TimeoutError),
        ec.KeyLock(tmp_path / "k.lock", timeout=0.3, poll=0.05),
    ):
        pass
