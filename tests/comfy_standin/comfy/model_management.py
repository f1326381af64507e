"""Stand-in for comfy.model_management: CPU device, a settable free-memory figure, interrupts."""

import torch

FREE_MEMORY = 8 << 30
FREE_MEMORY_CALLS = []
INTERRUPT_AFTER = None  # raise on the N-th interrupt check (None = never)
_checks = 0


class InterruptProcessingException(Exception):
    pass


def get_torch_device():
    return torch.device("cpu")


def get_free_memory(dev=None, torch_free_too=False):
    FREE_MEMORY_CALLS.append(dev)
    return FREE_MEMORY


def throw_exception_if_processing_interrupted():
    global _checks
    _checks += 1
    if INTERRUPT_AFTER is not None and _checks >= INTERRUPT_AFTER:
        raise InterruptProcessingException()


def reset(interrupt_after=None):
    global INTERRUPT_AFTER, _checks
    INTERRUPT_AFTER, _checks = interrupt_after, 0
