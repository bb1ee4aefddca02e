"""Frame files of `mmhe record`: the name from timestamp, counter and marker; atomic TIFFs.

Names follow the XIMEA recorder of MMHE, ``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif``
(local time of the capture to the millisecond, the frame counter modulo 1000, the
trigger value), built with `mmhe.io.frame_names.FrameName` so they parse with
`parse_frame_name` and `FrameSequence`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import tifffile

from mmhe.io import bayer
from mmhe.io.frame_names import COUNTER_MODULUS, FrameName

__all__ = ["TiffFrameWriter", "frame_file_name"]


def frame_file_name(wall_s: float, counter: int, marker: int) -> str:
    """``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif`` for a capture time.

    wall_s : seconds since the epoch; named in local time, milliseconds truncated (the
        clock reading when the frame was taken, never rounded into the next millisecond).
    counter : frame counter (taken modulo 1000). marker : trigger value 1..255.
    """
    moment = dt.datetime.fromtimestamp(wall_s)
    return FrameName(
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
        counter % COUNTER_MODULUS,
        int(marker),
        moment.date(),
    ).file_name()


class TiffFrameWriter:
    """Write one frame as a TIFF, atomically (a hidden temporary name, then a rename).

    folder : the camera folder.
    bayer_pattern : "RGGB" etc. when frames are raw Bayer: written as TIFF/EP CFA images
        (demosaiced on read by `FrameSequence.read`); None for mono or RGB frames.
    to_rgb : demosaic raw Bayer frames before writing (3x the bytes).
    An existing file is never overwritten: `write` raises FileExistsError instead.
    """

    def __init__(self, folder: Path, bayer_pattern: str | None = None, to_rgb: bool = False):
        self.folder = Path(folder)
        self.bayer_pattern = bayer_pattern
        self.to_rgb = to_rgb and bayer_pattern is not None
        self._cfa_tags = bayer.cfa_tags(bayer_pattern) if bayer_pattern else None

    @property
    def stored_as(self) -> str:
        """How frames are stored, for the log."""
        if self.bayer_pattern is None:
            return "as delivered (mono or RGB)"
        if self.to_rgb:
            return f"RGB, demosaiced from the camera's {self.bayer_pattern} Bayer frames"
        return (
            f"raw {self.bayer_pattern} Bayer frames as delivered (TIFF/EP CFA; demosaiced "
            "on read by FrameSequence)"
        )

    def write(self, image: np.ndarray, name: str) -> int:
        """Write `image` as ``folder/name``; returns the bytes of pixel data written."""
        final = self.folder / name
        if final.exists():
            raise FileExistsError(f"{final} exists already; frames are never overwritten")
        temporary = self.folder / f".{name}.part"
        if self.to_rgb:
            image = bayer.demosaic(image, self.bayer_pattern)
        try:
            if image.ndim == 3:
                tifffile.imwrite(temporary, image, photometric="rgb", metadata=None)
            elif self._cfa_tags is not None:
                tifffile.imwrite(
                    temporary,
                    image,
                    photometric=bayer.CFA_PHOTOMETRIC,
                    extratags=self._cfa_tags,
                    metadata=None,
                )
            else:
                tifffile.imwrite(temporary, image, photometric="minisblack", metadata=None)
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return int(image.nbytes)
