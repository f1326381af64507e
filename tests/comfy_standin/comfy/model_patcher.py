"""Stand-in for comfy.model_patcher: ModelPatcher with 0.3.64's constructor and the parts the
model manager stand-in uses (load_device, offload_device, model_size, moving the weights)."""

import torch


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        if not hasattr(model, "device"):
            model.device = offload_device

    def model_size(self):
        if self.size <= 0:
            self.size = sum(t.nelement() * t.element_size() for t in self.model.state_dict().values())
        return self.size

    def load(self, device):
        self.model.to(device)
        self.model.device = torch.device(device)

    def detach(self, unpatch_all=True):
        self.load(self.offload_device)
        return self.model
