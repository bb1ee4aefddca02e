"""Evaluation: protocols (`splits`), metrics (`metrics`), intervals (`intervals`), the
leakage audit (`audit`), the training engine (`training`) and the benchmark runner
(`runner`, with its tables in `results` and fold provenance in `provenance`).

>>> from mmhe.evaluation import loso, run_folds, pooled_scores
>>> folds = list(loso(groups))                                  # doctest: +SKIP
>>> predictions = run_folds("ststnet", X, y, groups, folds)     # doctest: +SKIP
>>> pooled_scores(predictions.y_true, predictions.y_pred)       # doctest: +SKIP
"""

from mmhe.evaluation.audit import audit_fits, near_duplicates
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
from mmhe.evaluation.training import (
    FitResult,
    TrainSettings,
    epoch_permutation,
    fit_predict,
    fold_seeds,
    resolve_settings,
    run_folds,
    shared_batches,
    tune_allocator,
)

__all__ = [
    "METRICS",
    "FitResult",
    "Fold",
    "LeakageError",
    "SubjectScores",
    "TrainSettings",
    "audit_fits",
    "audit_split",
    "bootstrap_ci",
    "confusion",
    "epoch_permutation",
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
    "resolve_settings",
    "run_folds",
    "scores_from_confusion",
    "shared_batches",
    "simulate_coverage",
    "subject_stimulus_kfold",
    "trial_kfold",
    "tune_allocator",
]
