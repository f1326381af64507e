"""Scene-cut detection for the temporal video pipeline.

Each frame is reduced to a 32x32 luma thumbnail (BT.601 weights, area averaged, then a 3x3
binomial blur; 0..1). Frame k gets a *change score* against frame k-1 that motion, fades and
flashes hardly move:

- **Motion**: frame k's central 22x22 thumbnail pixels are compared with every 22x22 window of
  frame k-1 within ``SEARCH_RADIUS`` = 5 thumbnail pixels (15 % of the frame per frame: a whip
  pan or a jerk of a handheld camera), and the best match counts. A pan is a shift, so it
  matches; a cut matches nowhere.
- **Fades and flashes** change brightness and contrast, not structure, so the two (mean
  removed) windows are compared through their correlation rho: the score is
  ``sqrt(1 - rho^2)``, the share of frame k that no brightness/contrast change of frame k-1
  explains (0 = same picture, about 1 = unrelated pictures; rho < 0 counts as 0).
- **Nearly flat frames** (black, the end of a fade) carry no structure to compare, so the
  score is scaled by ``sigma / (sigma + FLAT_CONTRAST)``, sigma the larger of the two windows'
  luma standard deviations: a fade's last step into black scores <= 0.45, a cut from a picture
  to black (sigma of the picture, 0.1-0.3) still scores high.

A frame is a cut when its score exceeds the threshold for the sensitivity **and** is
``ADAPTIVE_RATIO`` times the median score of the ``ADAPTIVE_WINDOW`` frames before it (the
adaptive test of PySceneDetect's adaptive detector, made causal): a shot whose content keeps
changing (water, crowds, fast zooms) raises its own bar, a sudden change in a steady shot does
not. The median ignores an earlier cut inside the window.

Sensitivity (0..1, higher = more cuts): threshold = ``MAX_THRESHOLD - (MAX_THRESHOLD -
MIN_THRESHOLD) x sensitivity`` = 0.90 - 0.60 x sensitivity; 0 never cuts, 0.6 (default) gives
0.54, 0.8 gives 0.42, 1 gives 0.30. Scores on the synthetic clips of benchmarks/scene_cuts.py
(real photos panned, zoomed, faded, flashed and cut): still shots with grain < 0.05; pans up to
9 % of the frame per frame and a handheld shake <= 0.24; zooms up to 6 % per frame <= 0.30;
fades, dissolves and flashes <= 0.26 except the last step into black (0.45); cuts between
shots 0.76-0.9, between dim low-contrast shots 0.61-0.8. Missed at every sensitivity: a cut to
a closer framing of the same low-detail picture (0.23; the old rule scored it 0.03).

Bounded history (for workers that start mid-clip): the decision at frame k is a pure function of
frames k - HISTORY_FRAMES .. k (fewer at the start of a clip; frame 0 always restarts). Nothing
else is carried: a caller continuing a clip passes the last HISTORY_FRAMES thumbnails
(``recent_history``), and a worker starting at frame k decodes frames k - HISTORY_FRAMES .. k-1
as a prefix to reproduce the single-process decisions exactly.

Known blind spot: a change between two flat frames (black to white) is not a cut here; the
temporal state then blends flat into flat for a frame or two.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

THUMB_SIZE = 32
SEARCH_RADIUS = 5
FLAT_CONTRAST = 0.015
ADAPTIVE_WINDOW = 8
ADAPTIVE_RATIO = 2.5
# Frames before k that the decision at frame k reads: its predecessor, plus the
# ADAPTIVE_WINDOW scores before it (each needs its own predecessor).
HISTORY_FRAMES = ADAPTIVE_WINDOW + 1

MAX_THRESHOLD = 0.90
MIN_THRESHOLD = 0.30
DEFAULT_SENSITIVITY = 0.6

_LUMA = (0.299, 0.587, 0.114)


def thumbnails(frames_bchw: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) RGB 0..1 -> (n, th, tw) float32 luma thumbnails (th, tw <= 32), on CPU."""
    h, w = frames_bchw.shape[-2:]
    # Area averaging and luma are both linear: average first, so the per-pixel work is one op.
    small = F.adaptive_avg_pool2d(frames_bchw.float(), (min(THUMB_SIZE, h), min(THUMB_SIZE, w)))
    luma = small[:, 0] * _LUMA[0] + small[:, 1] * _LUMA[1] + small[:, 2] * _LUMA[2]
    # A 3x3 binomial blur: a shift by a fraction of a thumbnail pixel (which the integer shift
    # search cannot undo) then changes the thumbnail far less; cuts still score > 0.7.
    p = F.pad(luma[:, None], (1, 1, 1, 1), mode="replicate")[:, 0].cpu()
    p = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4
    return (p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]) / 4


def cut_threshold(sensitivity: float) -> float:
    """Change score above which a frame can be a cut; inf (never) for sensitivity <= 0."""
    s = float(sensitivity)
    if s <= 0:
        return float("inf")
    return MAX_THRESHOLD - (MAX_THRESHOLD - MIN_THRESHOLD) * min(s, 1.0)


def _search_radius(th: int, tw: int) -> int:
    """The shift search needs a central window of at least 4x4 pixels."""
    return max(0, min(SEARCH_RADIUS, (min(th, tw) - 4) // 2))


def _window_means(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """Mean of every wh x ww window of x (h, w), from an integral image: (h-wh+1, w-ww+1)."""
    c = F.pad(x.cumsum(0).cumsum(1), (1, 0, 1, 0))
    return (c[wh:, ww:] - c[:-wh, ww:] - c[wh:, :-ww] + c[:-wh, :-ww]) / (wh * ww)


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt for x >= 0 through rsqrt (1 / inf = 0 at x = 0): torch 2.13's sqrt and pow hand
    even 121 elements to the thread pool (8 ms of CPU per call with 2 threads, measured), rsqrt
    does not."""
    return 1 / x.rsqrt()


def pair_score(current: torch.Tensor, previous: torch.Tensor) -> float:
    """Change score of thumbnail ``current`` (th, tw) against ``previous`` (th, tw), 0..1: see
    the module docstring. One pair at a time, in float64, so a score never depends on which
    other frames were computed with it (a worker's batches differ from the single process's).
    Only small elementwise ops and sums: pooling and convolution kernels hand even a 32x32
    input to the thread pool, which costs milliseconds per call on a busy CPU (measured)."""
    th, tw = current.shape
    r = _search_radius(th, tw)
    wh, ww = th - 2 * r, tw - 2 * r
    a = current[r : r + wh, r : r + ww].double()
    a = a - a.mean()
    var_a = a.pow(2).mean()
    b = previous.double()
    # For every shift (one entry each): the previous frame's window mean and variance, and its
    # covariance with the (mean-removed, so no mean term) central window of the current frame.
    mean_b = _window_means(b, wh, ww)
    var_b = (_window_means(b * b, wh, ww) - mean_b * mean_b).clamp(min=0)
    rows = b.unfold(1, ww, 1)  # (th, shifts_x, ww): a view
    cov = torch.stack([(rows[dy : dy + wh].transpose(0, 1) * a).sum(dim=(1, 2)) for dy in range(2 * r + 1)])
    cov = (cov / (wh * ww)).clamp(min=0)
    rho2 = (cov * cov / (var_a * var_b).clamp(min=1e-18)).clamp(max=1.0)
    sigma = _sqrt(torch.maximum(var_b, var_a))
    score = _sqrt(1 - rho2) * sigma / (sigma + FLAT_CONTRAST)
    return float(score.min())


def _with_history(thumbs: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
    """The usable history (the last HISTORY_FRAMES thumbnails of the same size), then thumbs."""
    if history is None:
        return thumbs
    if history.ndim == 2:
        history = history[None]
    if history.shape[1:] != thumbs.shape[1:]:
        return thumbs  # another frame size: nothing to continue from
    return torch.cat([history[-HISTORY_FRAMES:].to(thumbs.dtype), thumbs])


def change_scores(thumbs: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
    """Change score of each thumbnail against the one before it (``history[-1]`` for the
    first); inf where there is none."""
    seq = _with_history(thumbs, history)
    scores = torch.full((seq.shape[0],), float("inf"))
    if seq.shape[0] > 1:
        scores[1:] = torch.tensor([pair_score(seq[k], seq[k - 1]) for k in range(1, seq.shape[0])])
    return scores[seq.shape[0] - thumbs.shape[0] :]


def detect_cuts(thumbs: torch.Tensor, history: torch.Tensor | None, sensitivity: float) -> list[bool]:
    """Per frame of ``thumbs`` (n, th, tw): True where the state must restart (a cut, or no
    previous frame at all). ``history``: the thumbnails of the frames before (the last
    HISTORY_FRAMES count; one (th, tw) thumbnail, or None at the start of a clip)."""
    seq = _with_history(thumbs, history)
    offset = seq.shape[0] - thumbs.shape[0]
    threshold = cut_threshold(sensitivity)
    if threshold == float("inf"):  # detection off: only a clip's first frame restarts
        return [offset == 0 and k == 0 for k in range(thumbs.shape[0])]
    scores = change_scores(seq, None).tolist()
    restart = []
    for k in range(offset, seq.shape[0]):
        score = scores[k]
        if score == float("inf"):
            restart.append(True)
            continue
        # scores[j] for j >= 1 needs frames j-1, j: all within frames k - HISTORY_FRAMES .. k.
        recent = scores[max(1, k - ADAPTIVE_WINDOW) : k]
        typical = statistics.median(recent) if recent else 0.0
        restart.append(bool(score > threshold and score > ADAPTIVE_RATIO * typical))
    return restart


def recent_history(history: torch.Tensor | None, thumbs: torch.Tensor) -> torch.Tensor:
    """What a caller carries to the next batch: the last HISTORY_FRAMES thumbnails of the clip
    so far (history, then this batch), (h, th, tw) with h <= HISTORY_FRAMES."""
    return _with_history(thumbs, history)[-HISTORY_FRAMES:].clone()
