"""Ingest parameters and the store version they define."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STORE_FORMAT = 3
"""Bumped when the store layout changes; part of every version hash (2: Zarr dimension
names and coordinates, continuous EEG, one group per expression's frames; 3: trials'
EEG read as views of the continuous session, not stored twice)."""


class IngestConfig(BaseModel):
    """Parameters of `ingest`; a different value gives a different store version.

    trial_padding_s : seconds added before and after each stimulus trial (default 0: the
        whole clip, from its marker to the next marker).
    frame_context : frames kept before the onset and after the offset of each expression.
    frame_size : longest side in pixels of stored face frames (None keeps the original).
    frame_color : ``rgb`` or ``grey``.
    include_rest : keep the rest block (marker 100) as a trial.
    keep_continuous_eeg : store the whole EEG session (``eeg_continuous``), for
        filtering and ICA before epoching (`MMHEStore.raw`); the trials are then read as
        views of it (`mmhe.store.trial_view`). False stores only the trials' samples (an
        ``eeg`` array of trials x channels x samples): smaller when the trials cover
        little of the session, and no continuous analysis.
    video_size : side in pixels of the grey face crops of every frame of every trial
        stored for spotting (`mmhe.store.videos`; e.g. 128); None stores no whole-trial
        videos.
    compression : how EEG, physiology and frame arrays are compressed: "fast" (default,
        Blosc LZ4 + bit shuffle), "small" (Zstd, the smallest frames) or "none"
        (`mmhe.store.zarr_arrays.array_compressors` gives the measured figures). It
        changes how arrays are written, not what they hold, so it is not part of the
        store version nor of a participant's provenance key: participants already
        stored are kept as they were written.
    """

    model_config = ConfigDict(extra="forbid")  # a typo is refused, not ignored

    trial_padding_s: float = Field(0.0, ge=0.0)
    frame_context: int = Field(10, ge=0)
    frame_size: int | None = Field(None, gt=8)
    frame_color: Literal["rgb", "grey"] = "rgb"
    include_rest: bool = True
    keep_continuous_eeg: bool = True
    video_size: int | None = Field(None, ge=16, le=1024)
    compression: Literal["fast", "small", "none"] = "fast"

    def version(self) -> str:
        """``v-`` + the first 10 hex digits of a hash of the parameters and store format.

        ``video_size`` enters the hash only when set, so stores made before it existed
        keep their version; ``compression`` never does (same content)."""
        exclude = {"compression"} | ({"video_size"} if self.video_size is None else set())
        payload = json.dumps(
            {"format": STORE_FORMAT, **self.model_dump(exclude=exclude)}, sort_keys=True
        )
        return "v-" + hashlib.sha256(payload.encode()).hexdigest()[:10]


def content_parameters(config: IngestConfig) -> dict:
    """The parameters that decide what a stored participant holds (not ``compression``)."""
    return config.model_dump(exclude={"compression"})
