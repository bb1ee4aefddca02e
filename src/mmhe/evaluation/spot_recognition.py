"""Recognition of the spotted intervals and the end-to-end STRS score (MEGC 2023-2025).

Per leave-one-subject-out fold (the folds of the spotting run): STSTNet (`fit_predict`,
Liong et al., FG 2019) is trained on the TRAINING participants' true intervals, each
described by the optical-flow image (`mmhe.features.flow.flow_image`: TV-L1 with
registration, strain + horizontal + vertical, 28 x 28) between its onset and apex frames
in the stored trial video; it then labels every interval the spotter found in the test
participant's videos, from the found onset to the found apex. Labels are the three
compound classes of the MEGC composite protocol (negative, positive, surprise); a true
interval without one (a calm clip) counts as ``other``, which no prediction can match.

STRS = overall spotting F1 x analysis F1 of the matched pairs (`spotting_scores` with
``labels``, the public scorer's rule). The frames are read through `AuditedInputs`, so
the audit records that no fold's recogniser saw its test participant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mmhe.evaluation.spotter import AuditedInputs
from mmhe.evaluation.spotting import spotting_scores
from mmhe.evaluation.training import fit_predict
from mmhe.features.face import box_in_crop
from mmhe.features.flow import flow_image
from mmhe.store.videos import VIDEO_MARGIN

CLASSES = ("negative", "positive", "surprise")
OTHER = "other"
RECOGNITION_MODEL = "ststnet"
RECOGNITION_EPOCHS = 200
"""Fewer than STSTNet's published 500: a few dozen training intervals per fold."""


def _flow(video, onset: int, apex: int) -> np.ndarray:
    size = int(video.frames.shape[1])
    if apex <= onset:
        apex = min(onset + 1, len(video) - 1)
    box = box_in_crop(size, margin=VIDEO_MARGIN)
    return flow_image(
        np.asarray(video.frames[onset]),
        np.asarray(video.frames[apex]),
        box=box,
        margin=VIDEO_MARGIN,
        flow_size=size,
    )


def recognise_intervals(
    store, videos: pd.DataFrame, truth: pd.DataFrame, intervals: pd.DataFrame, config, fps: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label every found interval (column ``emotion``: compound class) and score STRS.

    Returns the intervals with ``emotion`` and the recognition summary (STRS, analysis
    scores, per-fold audit).
    """
    truth = truth.copy()
    truth["label"] = [c if c in CLASSES else OTHER for c in truth["compound"]]
    owner = dict(
        zip(
            videos["video"],
            zip(videos["subject_id"], videos["trial_index"], strict=True),
            strict=True,
        )
    )
    inputs = AuditedInputs(videos, lambda v: store.video(*owner[v]), truth)
    intervals = intervals.copy()
    intervals["emotion"] = pd.Series([None] * len(intervals), dtype=object)
    images: dict[tuple[str, int, int], np.ndarray] = {}  # label-free: shared by the folds

    def image(view, video: str, onset: int, apex: int) -> np.ndarray:
        frames = view[video]  # every read goes through the audited view
        key = (video, int(onset), int(apex))
        if key not in images:
            images[key] = _flow(frames, int(onset), int(apex))
        return images[key]

    folds = []
    for fold, part in intervals.groupby("fold", sort=True):
        test_subject = part["participant"].iloc[0]
        train_subjects = sorted(set(videos["subject_id"]) - {test_subject})
        train = inputs.view(f"recognition-fold{fold}-train", train_subjects)
        test = inputs.view(f"recognition-fold{fold}-test", [test_subject], labels=False)
        known = train.truth()
        known = known[known["label"] != OTHER]
        if not len(known):
            folds.append(
                {
                    "fold": int(fold),
                    "test_subject": test_subject,
                    "n_train": 0,
                    "n_test": len(part),
                    "read_while_training": sorted(inputs.reads.get(train.name, set())),
                    "passed": test_subject not in inputs.reads.get(train.name, set()),
                }
            )
            continue
        x_train = np.stack([image(train, r.video, r.onset, r.apex) for r in known.itertuples()])
        y_train = np.asarray([CLASSES.index(c) for c in known["label"]])
        x_test = np.stack([image(test, r.video, r.onset, r.apex) for r in part.itertuples()])
        result = fit_predict(
            RECOGNITION_MODEL,
            x_train,
            y_train,
            x_test,
            n_classes=len(CLASSES),
            epochs=RECOGNITION_EPOCHS,
            seed=config.seed,
            fold_index=int(fold),
        )
        intervals.loc[part.index, "emotion"] = [CLASSES[i] for i in result.pred]
        read = inputs.reads.get(train.name, set())
        folds.append(
            {
                "fold": int(fold),
                "test_subject": test_subject,
                "n_train": len(known),
                "n_test": len(part),
                "read_while_training": sorted(read),
                "passed": test_subject not in read,
            }
        )
    scores = spotting_scores(
        truth[["video", "onset", "offset", "kind", "label"]],
        intervals[["video", "onset", "offset", "kind", "emotion"]].rename(
            columns={"emotion": "label"}
        ),
        iou=config.iou,
        fps=fps,
        labels="label",
    )
    summary = {
        "model": RECOGNITION_MODEL,
        "epochs": RECOGNITION_EPOCHS,
        "classes": list(CLASSES),
        "strs": scores["strs"],
        "spotting_f1": scores["overall"]["f1"],
        "analysis": scores["analysis"],
        "audit": {"passed": all(f["passed"] for f in folds), "folds": folds},
    }
    return intervals, summary
