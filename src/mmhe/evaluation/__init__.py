"""Evaluation: protocols (`splits`), metrics (`metrics`), intervals (`intervals`), the
leakage audit (`audit`), training (`training` for one fold, `folds` for a protocol,
with the stacked engine in `engine` and the device choice in `device`) and the benchmark
runner (`runner`, with its tables in `results` and fold provenance in `provenance`).

>>> from mmhe.evaluation import loso, run_folds, pooled_scores
>>> folds = list(loso(groups))                                  # doctest: +SKIP
>>> predictions = run_folds("ststnet", X, y, groups, folds)     # doctest: +SKIP
>>> pooled_scores(predictions.y_true, predictions.y_pred)       # doctest: +SKIP
"""

from mmhe.evaluation.audit import audit_fits, near_duplicates
from mmhe.evaluation.device import resolve_device
from mmhe.evaluation.engine import Member, Trained, train_models
from mmhe.evaluation.folds import run_folds
from mmhe.evaluation.intervals import jackknife_interval, simulate_coverage
from mmhe.evaluation.metrics import (
    METRICS,
    SubjectScores,
    bootstrap_ci,
    confusion,
    paired_permutation_test,
    per_subject_scores,
    pooled_scores,
    scores_from_confusion,
)
from mmhe.evaluation.settings import TrainSettings, fold_seeds, resolve_settings
from mmhe.evaluation.splits import (
    Fold,
    LeakageError,
    audit_split,
    group_kfold,
    inner_validation_split,
    leave_stimulus_out,
    loso,
    subject_stimulus_kfold,
    trial_kfold,
)
from mmhe.evaluation.training import FitResult, fit_predict

__all__ = [
    "METRICS",
    "FitResult",
    "Fold",
    "LeakageError",
    "Member",
    "SubjectScores",
    "TrainSettings",
    "Trained",
    "audit_fits",
    "audit_split",
    "bootstrap_ci",
    "confusion",
    "fit_predict",
    "fold_seeds",
    "group_kfold",
    "inner_validation_split",
    "jackknife_interval",
    "leave_stimulus_out",
    "loso",
    "near_duplicates",
    "paired_permutation_test",
    "per_subject_scores",
    "pooled_scores",
    "resolve_device",
    "resolve_settings",
    "run_folds",
    "scores_from_confusion",
    "simulate_coverage",
    "subject_stimulus_kfold",
    "train_models",
    "trial_kfold",
]
