"""Features of every modality, as pure functions (array in, array or table out).

- `mmhe.features.eeg`: MNE preprocessing, band power and differential entropy per window,
  baseline correction and z-scoring.
- `mmhe.features.physio`: NeuroKit2 features of ECG, PPG, EDA, RSP, EMG and skin
  temperature, with plausibility flags.
- `mmhe.features.windows`: sample bounds of windows locked to expressions and trials.
- `mmhe.features.face`, `mmhe.features.landmarks`, `mmhe.features.face_mask`,
  `mmhe.features.alignment`, `mmhe.features.flow`: face detection, 68 landmarks, the
  face-only mask, alignment of an expression's frames, optical flow (`frames` and
  `registration` hold their shared pieces).
- `mmhe.features.spotting`: head-free motion of facial regions in long trial videos (the
  frame scores of expression spotting); `mmhe.features.face_regions`: the regions, from
  68 landmarks or from the face box.

Import the submodule you need (``from mmhe.features import eeg``); this package imports
none of them, so importing one modality never pulls in the others' dependencies.
"""
