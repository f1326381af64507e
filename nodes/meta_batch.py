"""The temporal state across the prompts of one VideoHelperSuite meta batch.

VHS's "Meta Batch Manager" splits a long video by queueing the same workflow once per batch of
frames, so a ``temporal_state`` output cannot reach the next batch through a link: each batch
is a separate prompt. What links them is the manager node's object, which ComfyUI keeps (and
reuses) across those prompts, and the ``requeue`` input VHS writes into each re-queued prompt
(0 for the first batch of a run, n for the n-th re-queue).

So the state is stored per manager object (weakly: it goes when the manager does) and per
Video Upscale node id (two of our nodes under one manager never share), tagged with the batch
number it ends. A batch uses the stored state only when it is the very next batch of the same
run: batch 0 always starts fresh (a new video or a re-run), and a gap (a batch failed or was
cancelled) starts fresh with a warning rather than joining frames that are not consecutive.
"""

from __future__ import annotations

import logging
import weakref

logger = logging.getLogger("ParagonSR2")

META_BATCH_TYPE = "VHS_BatchManager"

# manager object -> {our node id: (batch number the state ends, state)}
_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batch_number(manager, prompt: dict | None) -> int:
    """Which batch of the manager's run this prompt is (VHS's ``requeue`` input; 0 = first)."""
    manager_id = getattr(manager, "unique_id", None)
    node = (prompt or {}).get(str(manager_id)) or (prompt or {}).get(manager_id) or {}
    try:
        return int(node.get("inputs", {}).get("requeue", 0) or 0)
    except (TypeError, ValueError):
        return 0


def state_before(manager, node_id, number: int):
    """The state the previous batch of this run left for node ``node_id``, else None."""
    stored = _states.get(manager, {}).pop(node_id, None)  # each state is used at most once
    if number <= 0:
        return None
    if stored is None or stored[0] != number - 1:
        logger.warning(
            "ParagonSR2 Video Upscale: meta batch %d has no state from batch %d (it failed, was "
            "cancelled or ran elsewhere); starting the temporal state fresh",
            number,
            number - 1,
        )
        return None
    return stored[1]


def remember(manager, node_id, number: int, state) -> None:
    try:
        _states.setdefault(manager, {})[node_id] = (number, state)
    except TypeError:  # an object that cannot be weakly referenced: keep nothing rather than leak
        logger.warning(
            "ParagonSR2 Video Upscale: this meta batch manager cannot hold a state; batches will start fresh"
        )
