"""ParagonSR2 network: pure PyTorch, no ComfyUI. Spec ("the spec" in comments): docs/network.md.

Public API: ``build_model``, ``load_model``, ``save_model``, ``ModelLoadError``.
"""

from .checkpoint import MODEL_SUFFIXES, load_model, normalize_state_dict, read_checkpoint, save_model
from .detect import detect_config, looks_like_paragonsr2
from .errors import ModelLoadError
from .mode import reference_mode
from .network import SUPPORTED_SCALES, VARIANTS, ParagonSR2, ParagonSR2Config, build_model, factory_config

__all__ = [
    "MODEL_SUFFIXES",
    "SUPPORTED_SCALES",
    "VARIANTS",
    "ModelLoadError",
    "ParagonSR2",
    "ParagonSR2Config",
    "build_model",
    "detect_config",
    "factory_config",
    "load_model",
    "looks_like_paragonsr2",
    "normalize_state_dict",
    "read_checkpoint",
    "reference_mode",
    "save_model",
]
