"""The leakage audit, measured from what each stage actually saw.

Three kinds of evidence, each computed, none asserted:

1. The split (`mmhe.evaluation.splits.audit_split`): train and test sample sets, and
   the units a protocol keeps apart (participants, trials, stimulus clips), are disjoint.
2. Every fitted piece of a fold (`audit_fits`): the training engine records, for each
   z-score scaler (whose mean also imputes missing values), each model's own scaler, the
   model fit, the early-stopping validation set and the stacking meta-learner, the
   sample indices it was fitted on and the statistics it ended with. The audit checks
   that those rows are training rows of the fold, share no participant (or trial, or
   clip) with the test rows, that validation participants are apart from the fitted
   ones, and recomputes each scaler's mean from the recorded rows of the input: a scaler
   fitted on other rows than it reports (e.g. on train + test) no longer matches.
3. The content (`near_duplicates`): samples of two different participants that are
   near-identical (normalised RMS distance below ``tol`` after a per-feature z-score) point
   to one person under two IDs, or one recording ingested twice.

What no audit can see: hyper-parameters (epochs, learning rate, features) chosen by
looking at test results. Fix them before the run, or choose them on a nested split.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmhe.evaluation.splits import Fold

MEAN_RTOL = 1e-5
"""A recomputed scaler mean must agree with the recorded one to this share of the data's
SD (float32 inputs, float64 sums: observed differences are ~1e-9)."""


def rows_digest(rows: np.ndarray) -> str:
    """BLAKE2b of a sorted int64 row set (16 hex digits): the same set, the same digest."""
    data = np.sort(np.asarray(rows, dtype=np.int64))
    return hashlib.blake2b(data.tobytes(), digest_size=8).hexdigest()


def _recomputed_mean(x: np.ndarray, axis: Any) -> np.ndarray:
    x = np.asarray(x)
    if axis == "flat":
        flat = np.nan_to_num(x.astype(np.float64)).reshape(len(x), -1)
        return flat.mean(axis=0)
    axis = int(axis) % x.ndim
    others = tuple(a for a in range(x.ndim) if a != axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice -> NaN -> 0
        mean = np.nanmean(x, axis=others, dtype=np.float64)
    return np.nan_to_num(mean).reshape(-1)


def audit_fits(
    fold: Fold,
    fits: Sequence[Mapping[str, Any]],
    X: np.ndarray | Mapping[str, np.ndarray] | None,
    groups: np.ndarray,
    units: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Check the fit records of one fold (rows are sample indices into X, -1 = unknown).

    units : {name: (N,) labels} the protocol keeps apart (default: participants =
        ``groups``); a fitted row sharing any of them with the test rows is a leak.
    Returns {"passed", "failures": [one line each], "fits": [per record: what,
    modality, n_rows, rows_blake2b, rows_outside_training, test_rows_used,
    shared_units, mean_matches_rows]}.
    """
    groups = np.asarray(groups)
    units = dict(units) if units is not None else {"participants": groups}
    train, test = np.asarray(fold.train_idx), np.asarray(fold.test_idx)
    test_units = {name: set(np.asarray(labels)[test].tolist()) for name, labels in units.items()}
    fitted_people: dict[str, set] = {}  # prefix ("" or "<member> member: ") -> participants
    records, failures = [], []
    for fit in fits:
        rows = np.asarray(fit["rows"], dtype=np.int64)
        what = fit["what"] + (f" [{fit['modality']}]" if fit.get("modality") else "")
        valid = rows[(rows >= 0) & (rows < groups.size)]
        outside = int(rows.size - np.isin(rows, train).sum())
        in_test = int(np.isin(valid, test).sum())
        shared = {
            name: sorted(test_units[name] & set(np.asarray(labels)[valid].tolist()))
            for name, labels in units.items()
        }
        shared = {name: values for name, values in shared.items() if values}
        record: dict[str, Any] = {
            "what": what,
            "n_rows": int(rows.size),
            "rows_blake2b": rows_digest(rows),
            "rows_outside_training": outside,
            "test_rows_used": in_test,
            "shared_units": {k: [str(v) for v in vals[:10]] for k, vals in shared.items()},
        }
        if outside or in_test or shared:
            failures.append(
                f"fold {fold.index}: {what} was fitted on {outside} rows outside the training "
                f"set ({in_test} test rows; shared {', '.join(shared) or 'nothing else'})"
            )
        if fit.get("mean") is not None and X is not None and valid.size:
            source = X[fit["modality"]] if isinstance(X, Mapping) else X
            x = np.asarray(source)[valid]
            expected = _recomputed_mean(x, fit.get("axis", -1))
            recorded = np.asarray(fit["mean"], dtype=np.float64).reshape(-1)
            scale = float(np.nanstd(np.nan_to_num(x.astype(np.float64)))) or 1.0
            same_shape = expected.shape == recorded.shape
            gap = float(np.max(np.abs(expected - recorded))) if same_shape else np.inf
            record["mean_matches_rows"] = bool(gap <= MEAN_RTOL * scale)
            record["mean_gap_in_sd"] = gap / scale
            if not record["mean_matches_rows"]:
                failures.append(
                    f"fold {fold.index}: {what} statistics differ from those of its recorded "
                    f"training rows by {gap / scale:.2e} SD: it was fitted on other data "
                    "(e.g. training + test)"
                )
        if fit["what"].endswith("model"):
            prefix = fit["what"][: -len("model")]
            fitted_people.setdefault(prefix, set()).update(groups[valid].tolist())
        if "early stopping" in fit["what"]:
            prefix = fit["what"].split("early stopping")[0]
            overlap = fitted_people.get(prefix, set()) & set(groups[valid].tolist())
            record["validation_participants_also_fitted"] = len(overlap)
            if overlap:
                failures.append(
                    f"fold {fold.index}: early-stopping participants {sorted(overlap)[:5]} "
                    "were also trained on"
                )
        records.append(record)
    return {"passed": not failures, "failures": failures, "fits": records}


def near_duplicates(
    X: np.ndarray,
    groups: np.ndarray,
    *,
    tol: float = 0.02,
    dims: int = 256,
    seed: int = 0,
    chunk: int = 2048,
) -> list[dict[str, Any]]:
    """Pairs of participants with near-identical samples (one person under two IDs?).

    X : (N, ...) one input (rows all NaN = missing, skipped); groups : (N,) participants.
    Each feature is z-scored over all samples (constant ones dropped, NaN -> 0), rows
    wider than ``dims`` are projected on ``dims`` seeded Gaussian directions (distances
    kept in expectation, Johnson-Lindenstrauss), and two samples of different
    participants closer than ``tol`` in RMS distance per feature (in feature SDs) count
    as near-identical. Samples of distinct people lie about 1 SD apart; a copy at 0.
    Works in row chunks (memory ~ chunk x features). Returns one entry per participant
    pair: participant_a, participant_b, n_pairs, min_distance, examples (sample indices).
    """
    groups = np.asarray(groups)
    X = np.asarray(X)
    flat = X.reshape(len(groups), -1)
    width = flat.shape[1]
    present = np.zeros(len(groups), dtype=bool)
    total, squares, count = np.zeros(width), np.zeros(width), np.zeros(width)
    for start in range(0, len(flat), chunk):
        block = flat[start : start + chunk].astype(np.float64)
        finite = np.isfinite(block)
        present[start : start + chunk] = finite.any(axis=1)
        block = np.where(finite, block, 0.0)
        total += block.sum(axis=0)
        squares += (block**2).sum(axis=0)
        count += finite.sum(axis=0)
    index = np.flatnonzero(present)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        sd = np.sqrt(np.clip(squares / count - mean**2, 0.0, None))
    keep = np.isfinite(sd) & (sd > 1e-9 * (np.abs(mean) + 1e-30))
    if index.size < 2 or not keep.any():
        return []
    used = int(keep.sum())
    projection = None
    if used > dims:
        rng = np.random.default_rng(seed)
        projection = (rng.standard_normal((used, dims)) / np.sqrt(dims)).astype(np.float64)
    rows = []
    for start in range(0, index.size, chunk):
        block = flat[index[start : start + chunk]][:, keep].astype(np.float64)
        z = np.nan_to_num((block - mean[keep]) / sd[keep])
        rows.append((z @ projection if projection is not None else z) / np.sqrt(used))
    z = np.concatenate(rows)
    squared = (z**2).sum(axis=1)
    g = groups[index]
    found: dict[tuple, dict[str, Any]] = {}
    for start in range(0, len(z), chunk):
        block = z[start : start + chunk]
        d2 = squared[start : start + chunk, None] + squared[None, :] - 2 * block @ z.T
        close = (d2 <= tol**2) & (g[start : start + chunk, None] != g[None, :])
        for i, j in zip(*np.nonzero(close), strict=True):
            a, b = index[start + i], index[j]
            if a >= b:
                continue
            key = tuple(sorted((str(groups[a]), str(groups[b]))))
            entry = found.setdefault(
                key,
                {
                    "participant_a": key[0],
                    "participant_b": key[1],
                    "n_pairs": 0,
                    "min_distance": np.inf,
                    "examples": [],
                },
            )
            entry["n_pairs"] += 1
            entry["min_distance"] = min(entry["min_distance"], float(np.sqrt(max(d2[i, j], 0))))
            if len(entry["examples"]) < 5:
                entry["examples"].append([int(a), int(b)])
    return sorted(found.values(), key=lambda e: -e["n_pairs"])


# ------------------------------------------------------------ run-level entries


def duplicate_checks(tasks: dict[tuple, Any]) -> tuple[list[dict], set[tuple]]:
    """Audit entries: near-duplicate samples across participants, per task and input.

    tasks : {(task, samples): `mmhe.evaluation.datasets.TaskData`}. Returns (entries,
    the (task, samples) keys that failed)."""
    checks, failed = [], set()
    for (task, samples), data in tasks.items():
        for name, X in data.X.items():
            pairs = near_duplicates(X, data.groups)
            if pairs:
                failed.add((task, samples))
            detail = (
                "; ".join(
                    f"{p['participant_a']} and {p['participant_b']} share {p['n_pairs']} "
                    f"near-identical samples (distance {p['min_distance']:.1e} SD)"
                    for p in pairs[:5]
                )
                + " -- the same person under two IDs, or one recording ingested twice?"
                if pairs
                else f"{len(data.y)} samples of {np.unique(data.groups).size} participants: "
                "no two participants share a sample closer than 0.02 SD (RMS per feature)"
            )
            checks.append(
                {
                    "check": f"{task}/{samples}: no near-identical {name} samples across "
                    "participants",
                    "passed": not pairs,
                    "detail": detail,
                }
            )
    return checks, failed


def combination_checks(
    label: str,
    outcomes: list[dict],
    infos: list[list[dict]],
    data: Any,
    complete: bool,
    tested_once: bool,
) -> list[dict]:
    """Audit entries of one combination (all its seeds), each computed from the fold
    records the runner saved (split audit, fit audit, epochs)."""
    spec = outcomes[0]["spec"]
    records = [i for per_seed in infos for i in per_seed]
    unit = {
        "loso": "participants",
        "group_kfold": "participants",
        "trial_kfold": "trials",
        "leave_stimulus_out": "trials and stimulus clips",
        "subject_stimulus_kfold": "participants and stimulus clips",
    }[spec.protocol]
    split_ok = all(bool(r["audit"].get("passed", False)) for r in records)
    fits = [r.get("fit_audit", {}) for r in records]
    failures = [f for fa in fits for f in fa.get("failures", [])]
    n_fits = sum(len(fa.get("fits", [])) for fa in fits)
    kinds = sorted({f["what"] for fa in fits for f in fa.get("fits", [])})
    recomputed = sum(
        1 for fa in fits for f in fa.get("fits", []) if f.get("mean_matches_rows") is not None
    )
    checks = [
        {
            "check": f"{label}: train and test {unit} disjoint in every fold",
            "passed": split_ok,
            "detail": f"{len(records)} folds over {len(outcomes)} seeds, from their index sets",
        },
        {
            "check": f"{label}: every fitted piece used training rows only",
            "passed": not failures and len(records) > 0,
            "detail": (
                "; ".join(failures[:5])
                if failures
                else f"{n_fits} fits checked ({', '.join(kinds)}): rows recorded by the "
                f"engine are training rows sharing no {unit.split(' and ')[0]} with the test "
                f"rows; {recomputed} scaler statistics recomputed from those rows and equal"
            ),
        },
    ]
    fixed = [
        r
        for r in records
        if r.get("epochs_set") is not None and r.get("epochs_trained") is not None
    ]
    short = [r for r in fixed if int(r["epochs_trained"]) != int(r["epochs_set"])]
    if spec.early_stopping:
        validation = [f for fa in fits for f in fa.get("fits", []) if "early stopping" in f["what"]]
        ok = bool(validation) and all(
            not f["test_rows_used"]
            and not f["rows_outside_training"]
            and not f["shared_units"]
            and not f.get("validation_participants_also_fitted")
            for f in validation
        )
        detail = (
            f"early stopping on inner validation participants in {len(validation)} folds: "
            "none of their rows is a test row or shares a test unit, none was also fitted"
        )
    else:
        ok = not short
        detail = (
            f"fixed epochs: all {len(fixed)} trained folds ran the set number of epochs"
            if fixed
            else "no epoch-based training (fitted once per fold)"
        )
        if short:
            detail = f"{len(short)} folds stopped before the set number of epochs"
    checks.append(
        {"check": f"{label}: no model selection on test data", "passed": ok, "detail": detail}
    )
    checks.append(
        {
            "check": f"{label}: tested on every sample of the task once per seed",
            "passed": tested_once,
            "detail": f"{len(data.sample_ids)} samples x {len(outcomes)} seeds",
        }
    )
    n_folds = len(outcomes[0]["folds"])
    checks.append(
        {
            "check": f"{label}: all {n_folds} folds finished for every seed",
            "passed": complete,
            "detail": f"{sum(len(o['finished']) for o in outcomes)} of "
            f"{sum(len(o['folds']) for o in outcomes)} fold runs",
        }
    )
    return checks
