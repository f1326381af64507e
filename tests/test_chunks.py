"""Chunked video: the planner, the warm-up rule and the state at frame k (engines/video/chunks.py),
and ParagonSR2 Video Upscale's start_frame, against one run over the whole clip. No Ray."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from packlib import (
    load_reference,
    max_abs,
    natural_image,
    reference_case_for,
    run_node,
)
from paragonsr2_pack.engines.backends import torch_engine
from paragonsr2_pack.engines.video import chunks, scene_cuts, temporal
from paragonsr2_pack.engines.video.options import VideoOptions
from paragonsr2_pack.nodes import image_nodes, video_nodes


def shot(h, w, n, seed):
    """n frames of one scene panning 1 px per frame (no cut inside at the default sensitivity)."""
    big = natural_image(h, w + n, seed=seed)
    return torch.cat([big[..., t : t + w] for t in range(n)]).permute(0, 2, 3, 1).contiguous()


def three_shots(h=24, w=24):
    """Shots of 5, 30 and 6 frames: two scene cuts (frames 5 and 35) and a long middle shot."""
    return torch.cat([shot(h, w, 5, 1), shot(h, w, 30, 2), shot(h, w, 6, 3)])


@pytest.fixture(scope="module")
def engine():
    model = load_reference(reference_case_for("realtime"))[0]
    return torch_engine.TorchEngine(model, device="cpu", precision="fp32")


@pytest.mark.parametrize("alpha, expected", [(0.0, 0), (0.2, 9), (0.5, 20), (0.8, 62), (0.95, 270)])
def test_warmup_is_the_shortest_prefix_whose_remaining_weight_is_below_1e_6(alpha, expected):
    p = chunks.warmup_frames(alpha)
    assert p == expected
    if alpha:
        assert alpha**p <= 1e-6 < alpha ** (p - 1)


def test_planner_covers_every_frame_once_and_starts_at_cuts():
    plan = chunks.plan_chunks(1000, [100, 130, 140, 700], alpha=0.2, chunk_frames=240)
    assert [c.index for c in plan] == list(range(len(plan)))
    assert plan[0].start == 0 and plan[-1].end == 1000
    assert all(a.end == b.start for a, b in itertools.pairwise(plan))
    assert all(0 < c.frames <= 240 for c in plan)
    # the short shots 0..100, 100..130, 130..140 are packed into one task; the long shot
    # 140..700 is cut into equal parts, not 240 + 240 + a stub
    assert [(c.start, c.end) for c in plan] == [(0, 140), (140, 327), (327, 513), (513, 700), (700, 850), (850, 1000)]
    assert [c.restart for c in plan] == [True, True, False, False, True, False]
    h = chunks.history_frames()
    for c in plan:  # at a cut only the cut detector's history; mid-shot 9 warm-up frames more at alpha 0.2
        assert c.warmup == (h if c.restart and c.start else 0 if c.restart else 9 + h)
        assert c.decode_start == c.start - c.warmup


def test_warmup_stops_at_the_last_cut():
    plan = chunks.plan_chunks(60, [30], alpha=0.5, chunk_frames=15)
    assert [(c.start, c.end) for c in plan] == [(0, 15), (15, 30), (30, 45), (45, 60)]
    h = chunks.history_frames()
    # 20 warm-up frames wanted; the cut at 30 anchors the state exactly (plus the detector's history)
    assert plan[3].decode_start == 30 - h
    assert plan[1].decode_start == 0  # 15 - 20 - h < 0: from the clip's start, exact
    assert chunks.shots(40, [10, 0, 99]) == [(0, 10), (10, 40)]


def test_cut_finder_matches_the_runner(engine):
    frames = three_shots()
    finder = chunks.CutFinder(scene_cuts.DEFAULT_SENSITIVITY)
    for i in range(0, frames.shape[0], 7):  # odd batch size: cuts across batch borders
        finder.add(frames[i : i + 7])
    assert finder.frames == 41 and finder.cuts == [5, 35]


@pytest.mark.parametrize("motion_adaptive", [False, True])
def test_state_at_frame_equals_the_runners_state(engine, motion_adaptive):
    frames = three_shots()[:14]
    key = "k"
    _, expected = temporal.upscale_video(engine, frames, motion_adaptive=motion_adaptive, model_key=key)
    got = chunks.state_at_frame(frames, temporal_strength=0.2, motion_adaptive=motion_adaptive, signature=(key, 24, 24))
    assert torch.equal(got.blended, expected.blended)
    assert torch.equal(got.last_thumb, expected.last_thumb)
    assert torch.equal(got.last_frame, expected.last_frame)
    assert got.frames_seen == expected.frames_seen == 14
    # and it continues a state like upscale_video does
    half = chunks.state_at_frame(
        frames[:6], temporal_strength=0.2, motion_adaptive=motion_adaptive, signature=(key, 24, 24)
    )
    rest = chunks.state_at_frame(
        frames[6:], temporal_strength=0.2, motion_adaptive=motion_adaptive, signature=(key, 24, 24), state=half
    )
    assert torch.equal(rest.blended, expected.blended) and rest.frames_seen == 14


@pytest.mark.parametrize("alpha, motion_adaptive", [(0.2, False), (0.5, True)])
def test_chunked_run_equals_one_run(engine, alpha, motion_adaptive):
    """Two scene cuts and a long shot split mid-shot: every chunk from its own frames plus the
    planned warm-up prefix, joined, equals one run over the clip."""
    frames = three_shots()
    options = {"temporal_strength": alpha, "motion_adaptive": motion_adaptive, "model_key": "k"}
    whole, _ = temporal.upscale_video(engine, frames, **options)
    finder = chunks.CutFinder(scene_cuts.DEFAULT_SENSITIVITY)
    finder.add(frames)
    plan = chunks.plan_chunks(41, finder.cuts, alpha, chunk_frames=7)
    mid_shot = [c for c in plan if not c.restart]
    assert mid_shot
    if alpha == 0.2:  # a real warm-up prefix inside the shot
        assert any(c.decode_start > 5 for c in mid_shot)
    else:  # 20 warm-up frames wanted: anchored at the cut (frame 5) instead, exact
        assert all(c.decode_start == max(0, 5 - chunks.history_frames()) for c in mid_shot if c.start < 25)
    parts = []
    for c in plan:
        # the workers' warm-up (no frames before a chunk at frame 0: the state stays None)
        video = VideoOptions(temporal_strength=alpha, motion_adaptive=motion_adaptive)
        state = chunks.warm_up(frames[c.decode_start : c.start], video, None, "k")
        out, _ = temporal.upscale_video(engine, frames[c.start : c.end], state=state, **options)
        parts.append(out)
    joined = torch.cat(parts)
    assert joined.shape == whole.shape
    diff = max_abs(joined, whole)
    # the warm-up bound: state off by <= alpha**P <= 1e-6; through the network well under 1e-4
    assert diff <= 1e-4, diff
    assert max_abs((joined * 255).round(), (whole * 255).round()) <= 1


def test_warmup_error_is_within_the_bound(engine):
    """Inside one long shot the warm-up state differs from the true one by at most alpha**P."""
    frames = shot(24, 24, 40, seed=5)
    alpha = 0.5
    true = chunks.state_at_frame(frames[:30], temporal_strength=alpha, signature=("k", 24, 24))
    p = chunks.warmup_frames(alpha)
    approx = chunks.state_at_frame(frames[30 - p : 30], temporal_strength=alpha, signature=("k", 24, 24))
    err = max_abs(true.blended, approx.blended)
    assert 0 < err <= alpha**p + 1e-7
    short = chunks.state_at_frame(frames[30 - 3 : 30], temporal_strength=alpha, signature=("k", 24, 24))
    assert max_abs(true.blended, short.blended) > 10 * err  # the prefix length is what matters


# -- the node ------------------------------------------------------------------------------
@pytest.fixture
def loaded(tmp_path, monkeypatch, arch, engine):
    (tmp_path / "upscale_models").mkdir()
    arch.save_model(engine._master, tmp_path / "upscale_models" / "rt.safetensors")
    monkeypatch.setenv("PARAGONSR2_MODELS_DIR", str(tmp_path))
    handle, _ = run_node(image_nodes.ParagonSR2Loader, model_name="rt.safetensors", precision="fp32")
    return handle


def test_node_two_ranges_with_start_frame_equal_one_run(loaded):
    """The recipe of docs/distributed.md: instance A takes [0, k), instance B loads
    [k - W, N) and sets start_frame = W; A + B equals one run over [0, N)."""
    Node = video_nodes.ParagonSR2VideoUpscale
    spec = Node.INPUT_TYPES()["optional"]["start_frame"]
    assert spec[0] == "INT" and spec[1]["default"] == 0 and spec[1]["tooltip"]
    frames = torch.cat([shot(24, 24, 5, 1), shot(24, 24, 35, 2), shot(24, 24, 6, 3)])
    n, k, alpha = 46, 32, 0.2  # k is mid-shot (the shot runs 5..40), 27 frames after the cut
    w = chunks.lead_in_frames(alpha)
    assert w == 18 and k - w > 5  # a real warm-up inside the shot
    whole, _ = run_node(Node, model=loaded, frames=frames, temporal_strength=alpha)
    a, _ = run_node(Node, model=loaded, frames=frames[:k], temporal_strength=alpha)
    b, state = run_node(Node, model=loaded, frames=frames[k - w :], temporal_strength=alpha, start_frame=w)
    assert a.shape[0] == k and b.shape[0] == n - k
    assert state.frames_seen == n - k + w
    joined = torch.cat([a, b])
    assert max_abs(joined, whole) <= 1e-4
    assert max_abs((joined * 255).round(), (whole * 255).round()) <= 1
    # from the clip's start: exact
    c, _ = run_node(Node, model=loaded, frames=frames, temporal_strength=alpha, start_frame=k)
    assert max_abs(c, whole[k:]) <= 1e-6
    with pytest.raises(ValueError, match="start_frame"):
        run_node(Node, model=loaded, frames=frames[:4], start_frame=4)
    assert math.isfinite(max_abs(b, whole[k:]))
