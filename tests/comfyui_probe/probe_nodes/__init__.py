"""Test-only ComfyUI custom nodes, loaded into every real server that tests/comfyui_probe starts
(a link in its temporary custom_nodes folder); never part of the pack.

* ``ParagonSR2TestCurrentCoreUpscale``: an UPSCALE_MODEL consumer written to current core's
  contract (0.33's "Upscale Image (using Model)"): it reads ``upscale_model.patcher.load_device``,
  loads the patcher with ``load_models_gpu([patcher], memory_required=..., force_full_load=True)``
  and runs the model over tiles without moving it itself (0.33 dropped ``upscale_model.to(device)``:
  the patcher's load must put the weights on the load device). 0.3.64's own node predates that
  contract, so on 0.3.64 this node is the only check of it.
* ``GET /paragonsr2_test/loaded_models``: the models in ComfyUI's model manager right now.
* ``ParagonSR2TestMetaBatch``: VideoHelperSuite's "Meta Batch Manager" as our Video Upscale node
  sees it (type ``VHS_BatchManager``; one object per manager node, which ComfyUI reuses across
  prompts; the prompt's ``requeue`` input counts the batches, 0 = a new run). The test queues
  the batches itself, which is what VHS's frontend does.
"""

import comfy.utils
import torch
from aiohttp import web
from comfy import model_management
from server import PromptServer


class CurrentCoreUpscale:
    CATEGORY = "testing/paragonsr2"
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model, image):
        device = upscale_model.patcher.load_device
        working = image.nelement() * image.element_size() * max(upscale_model.scale, 1) ** 2 * 64
        model_management.load_models_gpu([upscale_model.patcher], memory_required=working, force_full_load=True)
        lr = image.movedim(-1, -3).to(device)
        with torch.no_grad():
            hr = comfy.utils.tiled_scale(
                lr,
                lambda tile: upscale_model(tile.float()),
                tile_x=256,
                tile_y=256,
                overlap=32,
                upscale_amount=upscale_model.scale,
                output_device="cpu",
            )
        return (hr.clamp(0, 1).movedim(-3, -1),)


class MetaBatchStandIn:
    CATEGORY = "testing/paragonsr2"
    FUNCTION = "update_batch"
    RETURN_TYPES = ("VHS_BatchManager",)
    RETURN_NAMES = ("meta_batch",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"frames_per_batch": ("INT", {"default": 16, "min": 1})},
            "optional": {"requeue": ("INT", {"default": 0, "min": 0})},
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    def update_batch(self, frames_per_batch, requeue=0, prompt=None, unique_id=None):
        self.frames_per_batch = frames_per_batch
        self.unique_id = unique_id
        return (self,)


@PromptServer.instance.routes.get("/paragonsr2_test/loaded_models")
async def loaded_models(request):
    rows = []
    for patcher in model_management.loaded_models():
        module = patcher.model
        weight = next(module.parameters(), None)
        rows.append(
            {
                "class": type(module).__name__,
                "patcher": type(patcher).__name__,
                "load_device": str(patcher.load_device),
                "weights_on": None if weight is None else str(weight.device),
                "dtype": None if weight is None else str(weight.dtype),
                "bytes": int(patcher.model_size()),
            }
        )
    return web.json_response(rows)


NODE_CLASS_MAPPINGS = {
    "ParagonSR2TestCurrentCoreUpscale": CurrentCoreUpscale,
    "ParagonSR2TestMetaBatch": MetaBatchStandIn,
}
