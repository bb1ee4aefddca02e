"""Synthetic MMHE datasets in the real file formats (`mmhe synth`).

`generate(out_dir, preset="demo", seed=0, **overrides)` writes a raw tree shaped like
the real release (EEGLAB/EDF/BDF/BrainVision EEG, BIOPAC MATLAB export, camera `.tif`
frames and `.avi` clips, the coding sheet) with emotion information planted in every
modality at a chosen strength, plus `ground_truth.json` with every planted quantity.
"""

from mmhe.synth.config import PRESETS, SynthConfig, resolve_config
from mmhe.synth.generate import SynthManifest, generate, plan

__all__ = ["PRESETS", "SynthConfig", "SynthManifest", "generate", "plan", "resolve_config"]
