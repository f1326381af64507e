"""The pack's only door to ComfyUI (``comfy.*``, ``folder_paths``), with standalone fallbacks.

Inside ComfyUI the services come from ComfyUI itself (model folders, torch device, free memory,
progress bar, interrupt). Outside it (tests, command line) the same functions work on their own:
models are looked up under ``$PARAGONSR2_MODELS_DIR`` (default ``./models``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from ..engines.backends.engine_cache import default_models_dir
from ..paragonsr2_arch import MODEL_SUFFIXES

logger = logging.getLogger("ParagonSR2")

try:  # ComfyUI puts these top-level modules on sys.path; elsewhere they do not exist.
    import comfy.model_management as _mm
    import comfy.utils as _comfy_utils
    import folder_paths as _folder_paths

    IN_COMFYUI = True
except ImportError:
    # None standalone. Every use is behind IN_COMFYUI, a narrowing the type checker cannot carry
    # into the functions below, hence typed Any rather than Optional.
    _mm = _comfy_utils = _folder_paths = cast(Any, None)
    IN_COMFYUI = False

FOLDER_NAME = "paragonsr2"  # our own model folder, registered with ComfyUI
CORE_FOLDER_NAME = "upscale_models"  # ComfyUI's folder for upscale models
PACK_DIR = Path(__file__).resolve().parents[1]
BUNDLED_DIR = PACK_DIR / "models"  # demo model(s) shipped with the pack
BUNDLED_PREFIX = "(bundled) "


def _register_model_folder() -> None:
    """Add ``models/paragonsr2`` to ComfyUI's folders (keeping paths a user configured)."""
    default = os.path.join(_folder_paths.models_dir, FOLDER_NAME)
    table = _folder_paths.folder_names_and_paths
    if FOLDER_NAME in table:
        # extra_model_paths.yaml may have created it with an empty extension set (= any file).
        paths, extensions = table[FOLDER_NAME]
        if default not in paths:
            paths.append(default)
        table[FOLDER_NAME] = (paths, set(extensions) | set(MODEL_SUFFIXES))
    else:
        table[FOLDER_NAME] = ([default], set(MODEL_SUFFIXES))
    try:  # so users see where to put files; a read-only install is fine too
        os.makedirs(default, exist_ok=True)
    except OSError:
        pass


if IN_COMFYUI:
    _register_model_folder()


def models_dir() -> Path:
    """ComfyUI's models folder; standalone: ``$PARAGONSR2_MODELS_DIR`` or ``./models``."""
    if IN_COMFYUI:
        return Path(_folder_paths.models_dir)
    return default_models_dir()


def output_dir() -> Path:
    """ComfyUI's output folder; standalone: ``$PARAGONSR2_OUTPUT_DIR`` or ``./output``."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_output_directory())
    return Path(os.environ.get("PARAGONSR2_OUTPUT_DIR") or "output").resolve()


def temp_dir() -> Path:
    """ComfyUI's temp folder (emptied when ComfyUI starts); standalone: ``$PARAGONSR2_TEMP_DIR``
    or the system's temporary folder."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_temp_directory())
    import tempfile

    return Path(os.environ.get("PARAGONSR2_TEMP_DIR") or tempfile.gettempdir()).resolve()


def _is_model_file(name: str) -> bool:
    return name.lower().endswith(MODEL_SUFFIXES)


def _files_under(folder: Path, recursive: bool = True) -> list[str]:
    if not folder.is_dir():
        return []
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p.relative_to(folder).as_posix() for p in pattern if p.is_file() and _is_model_file(p.name))


def _standalone_folders() -> list[tuple[Path, bool]]:
    """(folder, recursive) searched outside ComfyUI, in lookup order."""
    root = models_dir()
    return [(root / FOLDER_NAME, True), (root / CORE_FOLDER_NAME, True), (root, False)]


def _bundled_names() -> list[str]:
    return [BUNDLED_PREFIX + name for name in _files_under(BUNDLED_DIR, recursive=False)]


def list_model_files() -> list[str]:
    """Model names for the Loader: ``upscale_models`` + ``paragonsr2`` files, then bundled ones."""
    names: list[str] = []
    if IN_COMFYUI:
        for folder in (CORE_FOLDER_NAME, FOLDER_NAME):
            try:
                names.extend(n for n in _folder_paths.get_filename_list(folder) if _is_model_file(n))
            except KeyError:  # folder unknown to this ComfyUI
                pass
    else:
        bundled = BUNDLED_DIR.resolve()
        for folder, recursive in _standalone_folders():
            if folder.resolve() != bundled:  # ./models may be the pack's own folder
                names.extend(_files_under(folder, recursive))
    return sorted(set(names), key=str.lower) + _bundled_names()


def model_file_path(name: str) -> str:
    """Full path of a name from ``list_model_files``; FileNotFoundError says where it looked."""
    if name.startswith(BUNDLED_PREFIX):
        path = BUNDLED_DIR / name[len(BUNDLED_PREFIX) :]
        if path.is_file() and path.resolve().parent == BUNDLED_DIR.resolve():
            return str(path)
        raise FileNotFoundError(f"bundled model {name[len(BUNDLED_PREFIX) :]!r} is not in {BUNDLED_DIR}")
    if IN_COMFYUI:
        for folder in (FOLDER_NAME, CORE_FOLDER_NAME):
            found = _folder_paths.get_full_path(folder, name)
            if found:
                return found
        raise FileNotFoundError(
            f"model {name!r} is in neither models/{FOLDER_NAME} nor models/{CORE_FOLDER_NAME} "
            "(was it moved or deleted? refresh the page to update the list)"
        )
    searched = []
    for folder, _ in _standalone_folders():
        path = (folder / name).resolve()
        if path.is_file() and folder.resolve() in path.parents:
            return str(path)
        searched.append(str(folder))
    raise FileNotFoundError(f"model {name!r} not found in: {', '.join(searched)} (set PARAGONSR2_MODELS_DIR)")


def torch_device() -> torch.device:
    """ComfyUI's torch device; standalone: CUDA, then MPS, then CPU."""
    if IN_COMFYUI:
        return _mm.get_torch_device()
    from ..engines.backends.torch_engine import pick_device

    return pick_device("auto")


def model_patcher(module: torch.nn.Module, load_device: torch.device | None = None, *, like_core: bool = False):
    """A ComfyUI model patcher around ``module``, loaded to ``load_device`` (default ComfyUI's
    torch device) and offloaded to ComfyUI's offload device; None outside ComfyUI.

    ``like_core``: made the way core's Load Upscale Model makes one: ``CoreModelPatcher`` where
    this ComfyUI has it (0.33: the classic ModelPatcher, or ModelPatcherDynamic when dynamic VRAM
    is on), else ``ModelPatcher`` (0.3.64). Either way a load through ``load_models_gpu`` puts our
    plain torch layers on the load device, which 0.33's core node relies on (it no longer calls
    ``.to(device)``; 0.3.64's does): the classic patcher's full load moves the module, and 0.33's
    ModelPatcherDynamic force-loads every layer that is not a ``comfy.ops`` layer (with a CPU
    backup it restores on unload), so nothing stays on the offload device.
    Our own engines use the classic ModelPatcher (see nodes/managed.py for why)."""
    if not IN_COMFYUI:
        return None
    import comfy.model_patcher as patchers

    patcher_class = (like_core and getattr(patchers, "CoreModelPatcher", None)) or patchers.ModelPatcher
    comfy_device = _mm.get_torch_device()
    load_device = torch.device(load_device) if load_device is not None else comfy_device
    # ComfyUI's offload device belongs to its own device (with --highvram it is that GPU);
    # a node set to another device (cpu, a second GPU) offloads to the CPU.
    offload = _mm.unet_offload_device() if load_device == comfy_device else torch.device("cpu")
    return patcher_class(module, load_device=load_device, offload_device=offload)


def offload_device() -> torch.device:
    """Where ComfyUI keeps unloaded weights (CPU standalone)."""
    return _mm.unet_offload_device() if IN_COMFYUI else torch.device("cpu")


def load_models(patchers: list, memory_required: int = 0) -> None:
    """Have ComfyUI's model manager put ``patchers`` on their load devices, evicting other
    models so that ``memory_required`` bytes of working memory stay free besides the weights.
    Fully loaded: our layers are plain torch modules, which ComfyUI's partial (low-VRAM)
    loading would leave half on the offload device."""
    if IN_COMFYUI and patchers:
        _mm.load_models_gpu(list(patchers), memory_required=int(memory_required), force_full_load=True)


def make_room(memory_required: int, device: torch.device | str) -> None:
    """Ask ComfyUI to evict models until ``memory_required`` bytes are free on ``device``: for
    engines whose memory ComfyUI cannot manage (ONNX Runtime, TensorRT). No-op standalone."""
    device = torch.device(device)
    if IN_COMFYUI and device.type != "cpu":
        _mm.free_memory(int(memory_required), device)


def loaded_model_count(module: torch.nn.Module) -> int:
    """How many of ComfyUI's loaded models wrap ``module`` (0 standalone); for diagnostics and tests."""
    if not IN_COMFYUI:
        return 0
    return sum(1 for patcher in _mm.loaded_models() if getattr(patcher, "model", None) is module)


def free_memory(device: torch.device | str) -> int:
    """Bytes free on ``device`` (ComfyUI's accounting inside ComfyUI)."""
    device = torch.device(device)
    if IN_COMFYUI:
        return int(_mm.get_free_memory(device))
    from ..engines.runtime.memory import free_memory_bytes

    return free_memory_bytes(device)


def make_progress(total: int = 0) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callable: ComfyUI's progress bar, or a debug log standalone.

    The bar is created on the first call, because runners learn the step count (tiles) late.
    """
    bar = None

    def progress(done: int, steps: int = total) -> None:
        nonlocal bar
        if IN_COMFYUI:
            if bar is None:
                bar = _comfy_utils.ProgressBar(steps)
            bar.update_absolute(done, steps)
        else:
            logger.debug("ParagonSR2 progress %d/%d", done, steps)

    return progress


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed cancel (no-op standalone)."""
    if IN_COMFYUI:
        _mm.throw_exception_if_processing_interrupted()
