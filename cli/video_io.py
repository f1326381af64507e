"""Video files through PyAV (optional): decode in chunks of frames, encode the upscaled frames.

Audio and subtitles are not copied (the output holds the upscaled video stream only).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .image_io import CliError, to_uint8

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".gif")


def _av():
    try:
        import av
    except ImportError:
        raise CliError("video files need PyAV, which is not installed: pip install av "
                       "(or extract frames to a folder and upscale the folder)") from None
    return av


class VideoReader:
    """Frames of the first video stream as [N, H, W, 3] float32 chunks in 0..1."""

    def __init__(self, path: Path):
        av = _av()
        try:
            self._container = av.open(str(path))
        except Exception as exc:  # PyAV raises its own error types per failure
            raise CliError(f"cannot open video {path}: {exc}") from None
        if not self._container.streams.video:
            self._container.close()
            raise CliError(f"{path} has no video stream")
        self.stream = self._container.streams.video[0]
        self.rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.frames = int(self.stream.frames or 0)  # 0 when the container does not say

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        batch: list[np.ndarray] = []
        for frame in self._container.decode(self.stream):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == size:
                yield torch.from_numpy(np.stack(batch)).float().div_(255)
                batch = []
        if batch:
            yield torch.from_numpy(np.stack(batch)).float().div_(255)

    def close(self) -> None:
        self._container.close()


class VideoWriter:
    """H.264 (libx264) when the PyAV build has it, else MPEG-4 part 2; yuv420p."""

    def __init__(self, path: Path, rate: Fraction, width: int, height: int):
        av = _av()
        self._container = av.open(str(path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self._container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "16"}
        else:
            self.stream.bit_rate = max(2_000_000, width * height * 8)
        self._av = av

    def write(self, frames: torch.Tensor) -> None:
        """frames: [N, H, W, 3] float 0..1."""
        arr = to_uint8(frames)
        for rgb in arr:
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self.stream.encode(frame):
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self._container.mux(packet)
        self._container.close()
