"""Configuration of the synthetic generator: the presets and their validated overrides.

A `SynthConfig` fixes every quantity of a synthetic tree except the seed; the same
config and seed give byte-identical files. Presets:

- ``tiny``: 3 participants x 4 clips, 160 x 120 frames, ~20 s clips (tests, < 10 s);
- ``demo``: 10 participants x 8 clips (one per stimulus category), 320 x 240 frames,
  enough micro-expressions per compound class for a leave-one-subject-out run;
- ``spotting``: 6 participants x 4 clips of ~12 s plus the rest block, 192 x 144 frames,
  ``long_videos``: every frame of every run is written (as the real recorder does), with
  blinks, head moves and lighting drift planted beside the expressions
  (`mmhe.synth.long_video`); the set `mmhe spot` is measured on (about 3 GB);
- ``full-shape``: 275 participants x 42 clips at 2048 x 1088, the real dataset's shape
  (about 0.9 expressions per trial, 17 % MEs; `.tif` frames only at the coded onset,
  apex and offset, every frame in the `.avi` clips; hundreds of GB; parallel through
  Dask, resumable; never run by the tests).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmhe.errors import ConfigError
from mmhe.labels import STIMULUS_MARKERS

EegFormat = Literal["set", "edf", "bdf", "vhdr"]
MICRO_LIMIT_S = 0.5
"""An ME lasts at most 500 ms in total (data-format.md)."""


class SynthConfig(BaseModel):
    """Everything a synthetic tree depends on besides the seed (times in s, sizes in px)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = "custom"
    subjects: int = Field(10, ge=1, le=10_000, description="participants")
    clips: int = Field(8, ge=1, le=len(STIMULUS_MARKERS), description="stimulus clips each")
    clip_s: float = Field(20.0, gt=0, description="mean clip duration")
    rest_s: float = Field(15.0, ge=0, description="rest block (marker 100) duration")
    width: int = Field(320, ge=64, le=8192)
    height: int = Field(240, ge=48, le=8192)
    fps: float = Field(150.0, gt=0)
    eeg_format: EegFormat = "set"
    strength: float = Field(1.0, ge=0, description="default for the three strengths below")
    eeg_strength: float | None = Field(None, ge=0)
    physio_strength: float | None = Field(None, ge=0)
    face_strength: float | None = Field(None, ge=0)
    clean: bool = Field(False, description="no quirks in the coding file and the tree")
    expressions_per_clip: float = Field(2.5, ge=0, description="mean per emotional clip")
    micro_fraction: float = Field(0.5, ge=0, le=1)
    micro_mean_s: float = Field(0.38, gt=0)
    micro_max_s: float = Field(0.48, gt=0)
    macro_median_s: float = Field(1.2, gt=0)
    macro_range_s: tuple[float, float] = (0.6, 4.0)
    context_frames: int = Field(20, ge=0)
    edge_frames: int = Field(1, ge=1, description="frames kept at each end of a clip run")
    expression_frames: Literal["all", "key"] = Field(
        "all",
        description="tif frames per expression: all (with context) or key (onset/apex/offset)",
    )
    clip_codec: Literal["mjpeg", "ffv1"] = Field("mjpeg", description="codec of the .avi clips")
    long_videos: bool = Field(
        False, description="write every frame of every run, with distractors (spotting)"
    )
    blinks_per_min: float = Field(10.0, ge=0, description="blink rate (long_videos only)")
    head_moves_per_min: float = Field(
        3.0, ge=0, description="rate of brief head moves (long_videos only)"
    )
    lighting_drift: float = Field(
        0.05, ge=0, lt=0.5, description="amplitude of the slow lighting gain (long_videos only)"
    )
    workers: int = Field(1, ge=1, description="parallel participants (Dask when > 1)")

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if self.micro_max_s > MICRO_LIMIT_S:
            raise ValueError(
                f"micro_max_s={self.micro_max_s} s: a micro-expression lasts at most "
                f"{MICRO_LIMIT_S} s in total"
            )
        if not self.micro_mean_s <= self.micro_max_s:
            raise ValueError("micro_mean_s must not exceed micro_max_s")
        low, high = self.macro_range_s
        if not MICRO_LIMIT_S < low < high:
            raise ValueError(
                f"macro_range_s {self.macro_range_s}: need {MICRO_LIMIT_S} < low < high"
            )
        window = high + 2 * (self.context_frames + self.edge_frames) / self.fps + 1.0
        if self.expressions_per_clip > 0 and self.clip_s < window:
            raise ValueError(
                f"clip_s={self.clip_s} s is too short for a {high} s macro-expression with "
                f"{self.context_frames} context frames (need >= {window:.1f} s)"
            )
        return self

    @property
    def strengths(self) -> dict[str, float]:
        """The class-signal strength of each modality (`strength` where not set)."""
        pick = lambda value: self.strength if value is None else value  # noqa: E731
        return {
            "eeg": pick(self.eeg_strength),
            "physio": pick(self.physio_strength),
            "face": pick(self.face_strength),
        }


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        subjects=3,
        clips=4,
        clip_s=15.0,
        rest_s=6.0,
        width=160,
        height=120,
        expressions_per_clip=1.5,
        micro_fraction=0.6,
        macro_median_s=0.9,
        macro_range_s=(0.6, 2.0),
    ),
    "demo": dict(
        subjects=10,
        clips=8,
        clip_s=20.0,
        rest_s=15.0,
        width=320,
        height=240,
        expressions_per_clip=2.5,
        micro_fraction=0.8,
        macro_median_s=0.9,
        expression_frames="key",  # onset/apex/offset .tif only; the .avi clips hold all
        workers=2,
    ),
    "spotting": dict(
        subjects=6,
        clips=4,
        clip_s=12.0,
        rest_s=6.0,
        width=192,
        height=144,
        clean=True,
        expressions_per_clip=2.0,
        micro_fraction=0.5,
        macro_median_s=1.2,
        macro_range_s=(0.6, 3.0),
        long_videos=True,
        workers=2,
    ),
    "full-shape": dict(
        subjects=275,
        clips=42,
        clip_s=90.0,
        rest_s=60.0,
        width=2048,
        height=1088,
        expressions_per_clip=1.0,
        micro_fraction=0.17,
        expression_frames="key",
        workers=2,
    ),
}
"""Preset name -> SynthConfig fields; overrides are applied on top."""


def resolve_config(preset: str = "demo", **overrides: Any) -> SynthConfig:
    """The `SynthConfig` of a preset with `overrides` applied.

    Raises `ConfigError` for an unknown preset, an unknown override or an impossible
    value (negative counts, micro-expressions longer than 500 ms, ...).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(SynthConfig.model_fields) - {"preset"})
    if unknown:
        raise ConfigError(
            f"unknown synth option(s) {unknown}; valid options: "
            f"{sorted(set(SynthConfig.model_fields) - {'preset'})}"
        )
    fields = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return SynthConfig(preset=preset, **fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid synth parameters: {problems}") from None
