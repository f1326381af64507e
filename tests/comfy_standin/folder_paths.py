"""Stand-in for ComfyUI's folder_paths (names and behaviour of 0.3.64 that the pack uses)."""

import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
base_path = os.environ.get("STANDIN_COMFY_BASE", os.getcwd())
models_dir = os.path.join(base_path, "models")
output_directory = os.path.join(base_path, "output")
folder_names_and_paths = {
    "upscale_models": ([os.path.join(models_dir, "upscale_models")], supported_pt_extensions),
}


def get_output_directory():
    return output_directory


def _files(folder, extensions):
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder)
            if os.path.splitext(name)[-1].lower() in extensions or not extensions:
                found.append(rel)
    return found


def get_filename_list(folder_name):
    paths, extensions = folder_names_and_paths[folder_name]
    return sorted({f for p in paths for f in _files(p, extensions)})


def get_full_path(folder_name, filename):
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for folder in folder_names_and_paths[folder_name][0]:
        full = os.path.join(folder, filename)
        if os.path.isfile(full):
            return full
    return None
