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


# -- the model manager: which patchers are loaded, what was asked (0.3.64 signatures) ----------
LOADED = []  # patchers currently loaded, most recent first
LOAD_CALLS = []  # (patchers, memory_required, force_full_load) per load_models_gpu call
FREE_CALLS = []  # (memory_required, device) per free_memory call


def unet_offload_device():
    return torch.device("cpu")


def load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
):
    LOAD_CALLS.append((list(models), memory_required, force_full_load))
    for patcher in models:
        patcher.load(patcher.load_device)
        if patcher not in LOADED:
            LOADED.insert(0, patcher)


def loaded_models(only_currently_used=False):
    return list(LOADED)


def free_memory(memory_required, device, keep_loaded=()):
    FREE_CALLS.append((memory_required, device))
    return []


def unload_all_models():
    while LOADED:
        LOADED.pop().detach()
