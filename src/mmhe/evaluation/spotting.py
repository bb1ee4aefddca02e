"""The MEGC interval scorer for expression spotting in long videos, and the STRS score.

Rules (MEGC 2020-2022 spotting track; `docs/references.md`, "Spotting"):

- Intervals are inclusive frame ranges: length = offset - onset + 1, and
  IoU = |A n B| / |A u B| counted in frames.
- Within one video, predictions are taken in order of onset (then offset); each is
  matched to the still unmatched true interval of the same kind with the highest IoU,
  if that IoU >= `iou` (ties: the earlier true interval). A true interval is matched at
  most once, so a second prediction of the same expression is a false positive.
- TP, FP and FN = (true intervals - TP) are summed over all videos, then precision =
  TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R) (0 where undefined).
- Micro- and macro-expressions are scored apart: a row's ``kind`` (``ME``/``MaE``)
  decides; rows without one get it from their length with the CAS(ME)^2 limits scaled
  by the frame rate (`length_limits`: ME up to 16 frames at 30 fps, i.e. 0.533 s; MaE
  from 17 frames). An ME prediction can only match an ME truth and an MaE prediction
  an MaE truth. "overall" sums the two kinds' counts (as the MEGC result tables do).
- Predictions in videos without any true interval are false positives (the public
  STRS script only looks at videos that have ground truth; we do not drop them).

The STRS score (MEGC 2023-2025, Liong, See & Chan, Signal Process. Image Commun. 2023,
and its public scorer): over the matched (true positive) pairs of all videos, for every
label in the union of true and predicted labels, precision and recall of "is this label"
(one versus rest); the analysis F1 is the harmonic mean of the mean precision and the
mean recall over labels; STRS = spotting F1 (overall) x analysis F1. (The public
scorer's "UAR" output is the mean precision; we report mean recall as ``uar``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import ConfigError

KINDS = ("ME", "MaE")
REFERENCE_FPS = 30.0
REFERENCE_ME_FRAMES = (7, 16)
"""CAS(ME)^2 micro-expression lengths in frames at 30 fps (MEGC); MaE from 17 frames."""
_COLUMNS = ("video", "onset", "offset")


def length_limits(fps: float) -> tuple[int, int]:
    """(shortest, longest) micro-expression length in frames at `fps` (inclusive counts).

    The CAS(ME)^2 limits (7-16 frames at 30 fps) scaled by ``fps / 30``: (35, 80) at
    150 fps. Longer intervals are macro-expressions.
    """
    if not (np.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive frame rate in Hz, got {fps}")
    low, high = REFERENCE_ME_FRAMES
    return round(low * fps / REFERENCE_FPS), round(high * fps / REFERENCE_FPS)


def kind_from_length(length: np.ndarray, fps: float) -> np.ndarray:
    """``"ME"`` where the inclusive length is at most the ME limit at `fps`, else ``"MaE"``."""
    _, longest = length_limits(fps)
    return np.where(np.asarray(length) <= longest, "ME", "MaE")


def as_intervals(table: pd.DataFrame, what: str, fps: float) -> pd.DataFrame:
    """Validated copy of an interval table with integer onset/offset and a kind per row.

    Raises `ConfigError` naming `what` and the row for a missing column, a non-integer
    frame, an offset before its onset or an unknown kind.
    """
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"{what} must be a DataFrame with columns {list(_COLUMNS)}")
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"{what} lacks the column(s) {missing}; needs {list(_COLUMNS)}")
    out = table.copy()
    for column in ("onset", "offset"):
        values = pd.to_numeric(out[column], errors="coerce")
        bad = values.isna() | (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ConfigError(
                f"{what} row {row}: {column} {table[column].iloc[row]!r} is not a whole frame "
                "number (intervals are inclusive frame indices)"
            )
        out[column] = values.astype(np.int64)
    reversed_ = out["offset"] < out["onset"]
    if reversed_.any():
        row = int(np.flatnonzero(reversed_.to_numpy())[0])
        raise ConfigError(f"{what} row {row}: offset {out['offset'].iloc[row]} < onset")
    by_length = kind_from_length(out["offset"] - out["onset"] + 1, fps)
    if "kind" in out.columns:
        kinds = out["kind"].astype(object)
        known = kinds.isin(KINDS)
        unknown = ~known & kinds.notna()
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise ConfigError(f"{what} row {row}: kind {kinds.iloc[row]!r} is not ME or MaE")
        out["kind"] = np.where(known, kinds, by_length)
    else:
        out["kind"] = by_length
    out["video"] = out["video"].astype(str)
    return out


def interval_iou(onset_a, offset_a, onset_b, offset_b) -> np.ndarray:
    """IoU of every interval A with every interval B on inclusive frame counts.

    onset_a, offset_a : (n_a,) frames; onset_b, offset_b : (n_b,) frames.
    Returns (n_a, n_b) in [0, 1].
    """
    a0, a1 = np.asarray(onset_a)[:, None], np.asarray(offset_a)[:, None]
    b0, b1 = np.asarray(onset_b)[None, :], np.asarray(offset_b)[None, :]
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0) + 1, 0, None)
    union = (a1 - a0 + 1) + (b1 - b0 + 1) - inter
    return inter / union


def greedy_match(overlap: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """The MEGC greedy matching on an IoU matrix.

    overlap : (n_predicted, n_true) IoU, predictions in the order they are taken (by
        onset, then offset), true intervals in the order that breaks ties (by onset).
    Returns (n_predicted,) the index of the true interval each prediction matched, -1
    for none: each prediction takes the still unmatched true interval with the highest
    IoU if that IoU >= `iou` (ties: the first).
    """
    matched = np.full(overlap.shape[0], -1, dtype=np.int64)
    if overlap.shape[1] == 0:
        return matched
    free = np.ones(overlap.shape[1], dtype=bool)
    for i in range(overlap.shape[0]):
        candidates = np.where(free, overlap[i], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou - 1e-12:
            matched[i] = best
            free[best] = False
    return matched


def match_intervals(
    truth: pd.DataFrame, predicted: pd.DataFrame, *, iou: float = 0.5, fps: float = 150.0
) -> pd.DataFrame:
    """The MEGC matching of one set of predictions against the truth (module rules).

    Returns one row per prediction and per unmatched true interval: ``video``, ``kind``,
    ``outcome`` (``TP``, ``FP`` or ``FN``), ``truth_index`` / ``predicted_index`` (row
    labels of the inputs, NA where absent) and ``iou`` (of the matched pair, else the
    prediction's best IoU with a true interval of its kind).
    """
    if not 0.0 < iou <= 1.0:
        raise ConfigError(f"IoU threshold {iou} is not in (0, 1]; MEGC uses 0.5")
    for what, table in (("truth", truth), ("predicted", predicted)):
        if isinstance(table, pd.DataFrame) and not table.index.is_unique:
            raise ConfigError(f"{what} has repeated row labels; reset its index first")
    truth = as_intervals(truth, "truth", fps)
    predicted = as_intervals(predicted, "predicted", fps)
    rows: list[dict[str, Any]] = []
    truth_groups = dict(tuple(truth.groupby(["video", "kind"], sort=True)))
    pred_groups = dict(tuple(predicted.groupby(["video", "kind"], sort=True)))
    for key in sorted(set(truth_groups) | set(pred_groups)):
        video, kind = key
        gt = truth_groups.get(key, truth.iloc[:0]).sort_values(["onset", "offset"], kind="stable")
        pr = pred_groups.get(key, predicted.iloc[:0]).sort_values(
            ["onset", "offset"], kind="stable"
        )
        overlap = interval_iou(pr["onset"], pr["offset"], gt["onset"], gt["offset"])
        matched = greedy_match(overlap, iou)
        free = np.ones(len(gt), dtype=bool)
        free[matched[matched >= 0]] = False
        for i, label in enumerate(pr.index):
            hit = matched[i] >= 0
            rows.append(
                {
                    "video": video,
                    "kind": kind,
                    "outcome": "TP" if hit else "FP",
                    "truth_index": gt.index[matched[i]] if hit else pd.NA,
                    "predicted_index": label,
                    "iou": float(overlap[i].max()) if len(gt) else 0.0,
                }
            )
        for j in np.flatnonzero(free):
            rows.append(
                {
                    "video": video,
                    "kind": kind,
                    "outcome": "FN",
                    "truth_index": gt.index[j],
                    "predicted_index": pd.NA,
                    "iou": float(overlap[:, j].max()) if len(pr) else 0.0,
                }
            )
    return pd.DataFrame(
        rows, columns=["video", "kind", "outcome", "truth_index", "predicted_index", "iou"]
    )


def counts_to_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """{"tp", "fp", "fn", "precision", "recall", "f1"} (0 where a ratio is undefined)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def analysis_scores(true_labels, predicted_labels) -> dict[str, float]:
    """Recognition scores of matched pairs as the public STRS scorer computes them.

    Per label of the union, one-versus-rest precision and recall over the pairs; returns
    ``precision`` and ``recall`` (means over labels), ``f1`` (their harmonic mean: the
    STRS factor), ``uf1`` (mean per-label F1), ``uar`` (mean recall) and ``n`` (pairs).
    """
    t = np.asarray(true_labels, dtype=object)
    p = np.asarray(predicted_labels, dtype=object)
    if t.shape != p.shape:
        raise ConfigError("true and predicted labels must have the same length")
    labels = sorted(set(t.tolist()) | set(p.tolist()), key=str)
    if not labels:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "uf1": 0.0, "uar": 0.0, "n": 0}
    precisions, recalls, f1s = [], [], []
    for label in labels:
        per = counts_to_scores(
            int(((t == label) & (p == label)).sum()),
            int(((t != label) & (p == label)).sum()),
            int(((t == label) & (p != label)).sum()),
        )
        precisions.append(per["precision"])
        recalls.append(per["recall"])
        f1s.append(per["f1"])
    precision, recall = float(np.mean(precisions)), float(np.mean(recalls))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": float(f1),
        "uf1": float(np.mean(f1s)),
        "uar": recall,
        "n": int(t.size),
    }


def spotting_scores(
    truth: pd.DataFrame,
    predicted: pd.DataFrame,
    iou: float = 0.5,
    fps: float = 150.0,
    *,
    labels: str | None = None,
) -> dict[str, Any]:
    """MEGC spotting scores of `predicted` intervals against `truth` (module rules).

    truth, predicted : DataFrames with columns ``video``, ``onset``, ``offset``
        (inclusive frame indices) and optionally ``kind`` (``ME``/``MaE``; missing or NA:
        from the length, `length_limits`).
    iou : IoU threshold (MEGC: 0.5). fps : frame rate of the videos (Hz), for the
        length limits.
    labels : name of a column holding recognition labels in both tables (e.g.
        ``"emotion"``): then ``"analysis"`` (`analysis_scores` of the matched pairs)
        and ``"strs"`` (overall spotting F1 x analysis F1) are added.
    Returns {"ME": {...}, "MaE": {...}, "overall": {...}} with keys tp, fp, fn,
    precision, recall, f1 each, and ``"matches"`` (the `match_intervals` table).

    >>> truth = pd.DataFrame({"video": ["v"], "onset": [10], "offset": [59]})
    >>> found = pd.DataFrame({"video": ["v"], "onset": [20], "offset": [65]})
    >>> spotting_scores(truth, found)["overall"]["f1"]
    1.0
    """
    truth = truth.reset_index(drop=True) if isinstance(truth, pd.DataFrame) else truth
    if isinstance(predicted, pd.DataFrame):
        predicted = predicted.reset_index(drop=True)
    matches = match_intervals(truth, predicted, iou=iou, fps=fps)
    out: dict[str, Any] = {}
    for kind in KINDS:
        part = matches[matches["kind"] == kind]["outcome"]
        out[kind] = counts_to_scores(
            int((part == "TP").sum()), int((part == "FP").sum()), int((part == "FN").sum())
        )
    out["overall"] = counts_to_scores(*(out["ME"][k] + out["MaE"][k] for k in ("tp", "fp", "fn")))
    out["matches"] = matches
    if labels is not None:
        for what, table in (("truth", truth), ("predicted", predicted)):
            if labels not in table.columns:
                raise ConfigError(f"{what} has no {labels!r} column for the STRS score")
        pairs = matches[matches["outcome"] == "TP"]
        out["analysis"] = analysis_scores(
            truth.loc[pairs["truth_index"], labels].to_numpy(),
            predicted.loc[pairs["predicted_index"], labels].to_numpy(),
        )
        out["strs"] = out["overall"]["f1"] * out["analysis"]["f1"]
    return out


def results_table(scores: dict[str, Any]) -> pd.DataFrame:
    """Rows ME, MaE, overall; columns tp, fp, fn, precision, recall, F1 (results.csv)."""
    rows = [
        {"kind": kind, **{("F1" if k == "f1" else k): v for k, v in scores[kind].items()}}
        for kind in (*KINDS, "overall")
    ]
    return pd.DataFrame(rows, columns=["kind", "tp", "fp", "fn", "precision", "recall", "F1"])
