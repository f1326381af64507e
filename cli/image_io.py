"""Reading and writing images with Pillow, as ComfyUI-style tensors [1, H, W, C] float 0..1.

Reading never guesses wrong silently: 16-bit, 32-bit integer and float images are scaled by
their real range, palette/grey/CMYK are converted properly, EXIF orientation is applied, the
ICC profile is carried to the output, and animations keep every frame and its timing. What
cannot be kept is returned as a note that the command line prints.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Output suffix -> Pillow format and what it can hold.
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
}
ANIMATION_SUFFIXES = (".gif", ".png", ".webp")  # formats that keep every frame and its timing
_NO_ALPHA = (".jpg", ".jpeg", ".bmp")
_ICC = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
_EXIF = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


class CliError(Exception):
    """A failure with a message meant for the user (no traceback)."""


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise CliError("Pillow is needed to read and write images: pip install pillow") from None
    return Image


@dataclass
class Picture:
    """An image file as read: pixels plus what must survive into the output.

    Stills: ``pixels`` [1, H, W, C] float32 0..1 (C = 1, 3 or 4). Animations (GIF/APNG/WebP
    with more than one frame): ``frames`` uint8 [N, H, W, C] composited frames (they are 8-bit
    by nature; float would be 4x the memory) with ``durations`` in ms and ``loop``.
    """

    path: Path
    pixels: torch.Tensor | None = None
    frames: np.ndarray | None = None
    durations: list[int] = field(default_factory=list)
    loop: int | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied to the pixels and reset
    bits: int = 8  # per channel in the file (16 for I;16, 32 for F / I)
    float_input: bool = False  # mode F: a float TIFF output keeps it as float
    notes: list[str] = field(default_factory=list)  # said to the user: nothing changes silently

    @property
    def animated(self) -> bool:
        return self.frames is not None

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """Animation frames as [n, H, W, C] float32 0..1, ``size`` at a time."""
        assert self.frames is not None, "a still has no frames"
        for i in range(0, len(self.frames), size):
            yield torch.from_numpy(self.frames[i : i + size]).float().div_(255)


def _icc_space(profile: bytes | None) -> str | None:
    """Colour space of an ICC profile ('RGB', 'GRAY', 'CMYK', ...) from its header."""
    if not profile or len(profile) < 20:
        return None
    return profile[16:20].decode("ascii", "replace").strip()


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _integer_bits(im) -> tuple[int, bool]:
    """(bits, signed) of a mode 'I' image: the file's declared depth when it says (TIFF),
    else the smallest of 16 / 32 that holds its values."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None and tags.get(258):
        return int(_first(tags[258])), int(_first(tags.get(339, 1))) == 2  # BitsPerSample, SampleFormat
    low, high = im.getextrema()
    return (16, False) if low >= 0 and high <= 65535 else (32, low < 0)


def _to_float(im, picture: Picture, int_bits: tuple[int, bool] | None = None) -> np.ndarray:
    """[H, W, C] float32 0..1 for any Pillow mode, each mapped by its real range
    (``int_bits``: the depth a mode 'I' file declares, read before any transposition)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        picture.bits = 16
        return np.asarray(im, dtype=np.float32)[..., None] / 65535.0
    if mode == "I":
        bits, signed = int_bits or _integer_bits(im)
        picture.bits = bits
        peak = float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)
        arr = np.clip(np.asarray(im, dtype=np.float64) / peak, 0, 1).astype(np.float32)
        if arr.max() < 1 / 256:
            picture.notes.append(f"the values use under 1/256 of the file's {bits}-bit range: the output is near black")
        return arr[..., None]
    if mode == "F":
        picture.bits, picture.float_input = 32, True
        arr = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        low, high = float(arr.min()), float(arr.max())
        if low < 0 or high > 1:
            picture.notes.append(f"float values {low:.3g}..{high:.3g} clipped to 0..1 (the range float images use)")
        return np.clip(arr, 0, 1)[..., None]
    if mode == "CMYK":
        im = _cmyk_to_rgb(im, picture)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode != "RGB":
        im = im.convert("RGB")  # P, YCbCr, LAB, HSV, ...
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def _cmyk_to_rgb(im, picture: Picture):
    """CMYK through its embedded ICC profile to sRGB when littleCMS is there, else Pillow's
    naive formula; either way the CMYK profile cannot describe the RGB output."""
    profile = picture.icc_profile
    picture.icc_profile = None
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littleCMS
        ImageCms = None
    if profile and ImageCms is not None:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            rgb = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            picture.notes.append("CMYK converted to sRGB through the file's colour profile")
            return rgb
        except (OSError, ValueError, ImageCms.PyCMSError):
            pass
    picture.notes.append("CMYK converted to RGB without a colour profile (colours are approximate)")
    return im.convert("RGB")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# EXIF orientation -> the numpy equivalent of the Pillow transposition exif_transpose applies.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _deep_colour_png(path: Path) -> bool:
    """A PNG whose IHDR says 16 bits per channel in colour (RGB, RGBA) or grey+alpha: the
    ones Pillow reads at 8 bits. Read from the file header only."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    return (
        len(head) == 26
        and head[:8] == _PNG_SIGNATURE
        and head[12:16] == b"IHDR"
        and head[24] == 16
        and head[25] in (2, 4, 6)
    )


def _read_deep_png(path: Path, picture: Picture) -> np.ndarray | None:
    """[H, W, C] float32 0..1 of a 16-bit colour PNG decoded at full depth by pypng (alpha
    kept, grey+alpha as RGBA like the 8-bit path); None when pypng is not installed."""
    try:
        import png
    except ImportError:
        return None
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = int(info["planes"])
        arr = np.stack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    except (png.Error, OSError, ValueError) as exc:
        raise CliError(f"cannot read image {path}: {exc}") from None
    picture.bits = 16
    out = arr.astype(np.float32) / float(2 ** int(info["bitdepth"]) - 1)  # 65535 (less only when sBIT says)
    if planes in (1, 2):  # grey (+ alpha): as RGBA, the way the 8-bit path converts LA
        grey = out[..., :1]
        alpha = out[..., 1:] if planes == 2 else np.ones_like(grey)
        out = np.concatenate([grey, grey, grey, alpha], axis=-1)
    return out


def read_image(path: Path) -> Picture:
    """Read any image Pillow can open: every mode mapped to 0..1 by its real range, EXIF
    orientation applied, ICC profile kept, every frame of an animation with its timing."""
    image_mod = _pillow()
    from PIL import ImageOps, ImageSequence

    picture = Picture(Path(path))
    try:
        with image_mod.open(path) as im:
            picture.icc_profile = im.info.get("icc_profile") or None
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1 and im.format in ("GIF", "PNG", "WEBP"):
                _read_animation(im, picture, ImageSequence, image_mod)
                return picture
            if n_frames > 1 and im.format == "MPO":
                picture.notes.append(f"the file holds {n_frames} pictures (MPO); the first, main one is upscaled")
            elif n_frames > 1:
                raise CliError(
                    f"{path} holds {n_frames} pages ({im.format}); only single-page files and "
                    f"animations (GIF/PNG/WebP) are supported: split the pages first"
                )
            deep = None
            if im.format == "PNG" and _deep_colour_png(path):
                deep = _read_deep_png(path, picture)
                if deep is None:
                    picture.notes.append(
                        "16-bit colour PNG read at 8 bits per channel (pip install pypng reads it at 16)"
                    )
            if deep is not None:
                exif = im.getexif()
                orientation = exif.get(0x0112, 1) if exif else 1
                if orientation in _ORIENT:
                    deep = _ORIENT[orientation](deep)
                    picture.notes.append("EXIF orientation applied")
                if exif:
                    exif[0x0112] = 1
                    picture.exif = exif.tobytes()
                arr = deep
            else:
                arr = _read_pillow(im, picture, ImageOps)
    except CliError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CliError(f"cannot read image {path}: {exc}") from None
    space = _icc_space(picture.icc_profile)
    channels = arr.shape[-1]
    if (space == "GRAY" and channels != 1) or (space == "RGB" and channels == 1):
        picture.notes.append(f"colour profile ({space}) not kept: it does not fit the output's colours")
        picture.icc_profile = None
    picture.pixels = torch.from_numpy(np.ascontiguousarray(arr))[None]
    return picture


def _read_pillow(im, picture: Picture, image_ops) -> np.ndarray:
    """A still as Pillow decodes it: EXIF orientation applied, then mapped to 0..1."""
    im.load()
    int_bits = _integer_bits(im) if im.mode == "I" else None
    oriented = image_ops.exif_transpose(im)
    if oriented is not None and oriented is not im:
        if (im.getexif() or {}).get(0x0112, 1) != 1:
            picture.notes.append("EXIF orientation applied")
        im = oriented
    exif = im.getexif()
    if exif:
        exif[0x0112] = 1
        picture.exif = exif.tobytes()
    return _to_float(im, picture, int_bits)


def _read_animation(im, picture: Picture, image_sequence, image_mod) -> None:
    frames, alpha = [], False
    for frame in image_sequence.Iterator(im):
        frame.load()  # WebP fills in the frame's duration only when it is decoded
        duration = frame.info.get("duration")
        picture.durations.append(100 if duration is None else int(duration))  # 0 stays 0: the file's timing
        has_alpha = frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info
        alpha = alpha or has_alpha
        frames.append(frame.convert("RGBA" if has_alpha else "RGB"))
    mode = "RGBA" if alpha else "RGB"
    picture.frames = np.stack([np.asarray(f if f.mode == mode else f.convert(mode)) for f in frames])
    picture.loop = im.info.get("loop", 0)
    picture.notes.append(f"animation: {len(frames)} frames, {sum(picture.durations) / 1000:.2f} s")


def load_image(path: Path) -> torch.Tensor:
    """[1, H, W, C] float32 in 0..1 of a still image (see read_image for the rules)."""
    picture = read_image(path)
    if picture.frames is not None:
        raise CliError(f"{path} is an animation ({len(picture.frames)} frames)")
    assert picture.pixels is not None
    return picture.pixels


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[H, W, C] float 0..1 -> uint8, rounded to nearest."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _save_options(suffix: str, picture: Picture | None, has_alpha: bool, notes: list[str]) -> dict:
    options: dict = {"format": FORMATS[suffix]}
    if suffix in (".jpg", ".jpeg"):
        options.update(quality=95, subsampling=0)  # 4:4:4: upscales are all fine detail
    elif suffix == ".webp":
        options.update(quality=95)
    if picture is None:
        return options
    if picture.icc_profile:
        if suffix in _ICC:
            options["icc_profile"] = picture.icc_profile
        else:
            notes.append(f"colour profile not kept: {suffix} cannot hold one")
    if picture.exif and suffix in _EXIF:
        options["exif"] = picture.exif
    if has_alpha and suffix in _NO_ALPHA:
        notes.append(f"transparency dropped: {suffix} cannot hold it")
    return options


def save_image(
    image: torch.Tensor, path: Path, picture: Picture | None = None, format_suffix: str | None = None
) -> list[str]:
    """Write [H, W, C] float 0..1 (C = 1, 3 or 4) as 8-bit to ``path`` (the caller makes it
    atomic); the format comes from ``format_suffix`` (default: path's). Keeps the picture's
    ICC profile and EXIF where the format holds them; returns notes on what it could not keep."""
    image_mod = _pillow()
    suffix = (format_suffix or path.suffix).lower()
    if picture is not None and picture.pixels is not None and picture.pixels.shape[-1] == 1 and image.shape[-1] == 3:
        image = image.mean(dim=-1, keepdim=True)  # grey stays grey (and its GRAY profile stays valid)
    notes: list[str] = []
    options = _save_options(suffix, picture, image.shape[-1] == 4, notes)
    im = _deep_grey(image, picture, suffix, image_mod)
    if im is None:
        if picture is not None and picture.bits > 8:
            if suffix in (".png", ".tif", ".tiff") and image.shape[-1] > 1:
                why = "colour is written at 8 bits per channel; only grey keeps 16"
            else:
                why = f"{suffix} holds 8 bits per channel; .png or .tif keep 16"
            notes.append(f"{picture.bits}-bit input; the output is 8-bit ({why})")
        arr = to_uint8(image)
        if arr.shape[-1] == 4 and suffix in _NO_ALPHA:
            arr = arr[..., :3]
        im = image_mod.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)  # L, RGB or RGBA from the shape
    try:
        im.save(path, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot write image {path}: {exc}") from None
    return notes


def _deep_grey(image: torch.Tensor, picture: Picture | None, suffix: str, image_mod):
    """A grey output of a 16-bit / float input keeps its depth where the format can hold it:
    16-bit PNG or TIFF (I;16), 32-bit float TIFF (F). None: write 8-bit."""
    if picture is None or picture.bits <= 8 or image.shape[-1] != 1 or suffix not in (".png", ".tif", ".tiff"):
        return None
    values = image[..., 0].clamp(0, 1).cpu().numpy()
    if picture.bits == 32 and picture.float_input and suffix != ".png":
        return image_mod.fromarray(values.astype(np.float32))  # mode F
    return image_mod.fromarray((values * 65535).round().astype(np.uint16))  # I;16


def save_animation(
    frames: list[np.ndarray],
    durations: list[int],
    loop: int,
    path: Path,
    picture: Picture | None = None,
    format_suffix: str | None = None,
) -> list[str]:
    """Write uint8 [H, W, C] frames as an animated GIF / PNG (APNG) / WebP with per-frame
    ``durations`` (ms) and ``loop`` (0 = forever)."""
    image_mod = _pillow()
    suffix = (format_suffix or path.suffix).lower()
    notes: list[str] = []
    options = _save_options(suffix, picture, frames[0].shape[-1] == 4, notes)
    options.pop("exif", None)
    ims = [image_mod.fromarray(np.ascontiguousarray(f)) for f in frames]
    options.update(save_all=True, append_images=ims[1:], duration=list(durations), loop=int(loop or 0))
    if suffix == ".gif":
        options["disposal"] = 2  # each frame is a whole composited picture
    elif suffix == ".png":
        options.update(disposal=0, blend=0)
    elif suffix == ".webp":
        options.update(lossless=False, quality=95)
    try:
        ims[0].save(path, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot write animation {path}: {exc}") from None
    return notes
