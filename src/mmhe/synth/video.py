"""Write synthetic camera frames (`.tif`) and expression clips (`.avi`) atomically and
byte-reproducibly.

Each file is written under a temporary name in its destination folder, then moved into
place with `os.replace`, so an interrupted run never leaves a half-written file under
its final name. Nothing that varies between runs or library versions is written: no
timestamps, no software tags, no encoder version strings (FFmpeg's `bitexact` flags).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import tifffile

from mmhe.errors import ConfigError

AVI_CODECS: dict[str, str] = {"ffv1": "bgr0", "mjpeg": "yuvj444p"}
"""Codecs `write_avi` accepts -> the pixel format used: FFV1 is lossless (default);
MJPEG at quantiser 2 is ~3x smaller, mean error ~2 grey levels. Neither needs even
frame sizes."""

_FF_QP2LAMBDA = 118  # FFmpeg's quantiser -> lambda factor for global_quality
_MJPEG_QSCALE = 2


@contextlib.contextmanager
def _atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _check_frames(frames: np.ndarray, ndim: int, what: str, path: str | Path) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != ndim or frames.shape[-1] != 3:
        expected = "(height, width, 3)" if ndim == 3 else "(n_frames, height, width, 3)"
        raise ConfigError(
            f"{path}: {what} must be a uint8 RGB array of shape {expected}, "
            f"got {frames.dtype} {frames.shape}"
        )
    if frames.size == 0:
        raise ConfigError(f"{path}: {what} is empty {frames.shape}; nothing to write")
    return np.ascontiguousarray(frames)


def write_tif(path: str | Path, frame: np.ndarray, *, compression: str | None = None) -> None:
    """Write one camera frame as an RGB TIFF, atomically and with reproducible bytes.

    frame : array, shape (height, width, 3), uint8 RGB
    compression : None (uncompressed, like the camera's files) or a tifffile codec
        name such as "zlib" (also deterministic)
    Written with tifffile without its Software tag and JSON shape description.
    """
    frame = _check_frames(frame, 3, "frame", path)
    with _atomic_file(path) as temporary:
        tifffile.imwrite(
            temporary,
            frame,
            photometric="rgb",
            compression=compression,
            metadata=None,
            software=False,
        )


def write_avi(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    *,
    codec: str = "ffv1",
) -> None:
    """Write an expression clip as AVI with PyAV, atomically and with reproducible bytes.

    frames : array, shape (n_frames, height, width, 3), uint8 RGB
    fps : frame rate in Hz (150 for the MMHE camera); stored as an exact fraction
    codec : "ffv1" (lossless, default) or "mjpeg" (see `AVI_CODECS`)
    Single-threaded encoding with FFmpeg's bitexact flags on the codec and the AVI
    muxer, so identical input gives identical bytes. Read back with
    `av.open(path).decode(video=0)` or `cv2.VideoCapture`.
    """
    frames = _check_frames(frames, 4, "frames", path)
    if codec not in AVI_CODECS:
        raise ConfigError(f"{path}: codec {codec!r} is not one of {sorted(AVI_CODECS)}")
    if not (np.isfinite(fps) and fps > 0):
        raise ConfigError(f"{path}: fps must be a positive frame rate in Hz, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    options = {"flags": "+bitexact"}
    if codec == "mjpeg":
        options = {
            "flags": "+bitexact+qscale",
            "global_quality": str(_MJPEG_QSCALE * _FF_QP2LAMBDA),
        }
    _, height, width, _ = frames.shape
    with _atomic_file(path) as temporary:
        with av.open(str(temporary), "w", format="avi", options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=rate, options=options)
            stream.width, stream.height = width, height
            stream.pix_fmt = AVI_CODECS[codec]
            stream.codec_context.thread_count = 1
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode(None))
