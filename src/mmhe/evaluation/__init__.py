"""Evaluation: protocols (`splits`), metrics (`metrics`), training (`training`, `engine`).

>>> from mmhe.evaluation import loso, run_folds, pooled_scores
>>> folds = list(loso(groups))                                  # doctest: +SKIP
>>> predictions = run_folds("ststnet", X, y, groups, folds)     # doctest: +SKIP
>>> pooled_scores(predictions.y_true, predictions.y_pred)       # doctest: +SKIP
"""

from mmhe.evaluation.engine import Member, Trained, train_models
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
from mmhe.evaluation.settings import (
    TrainSettings,
    fold_seeds,
    resolve_device,
    resolve_settings,
)
from mmhe.evaluation.splits import (
    Fold,
    LeakageError,
    audit_split,
    group_kfold,
    inner_validation_split,
    loso,
    trial_kfold,
)
from mmhe.evaluation.training import FitResult, fit_predict, run_folds

__all__ = [
    "METRICS",
    "FitResult",
    "Fold",
    "LeakageError",
    "Member",
    "SubjectScores",
    "TrainSettings",
    "Trained",
    "audit_split",
    "bootstrap_ci",
    "confusion",
    "fit_predict",
    "fold_seeds",
    "group_kfold",
    "inner_validation_split",
    "loso",
    "paired_permutation_test",
    "per_subject_scores",
    "pooled_scores",
    "resolve_device",
    "resolve_settings",
    "run_folds",
    "scores_from_confusion",
    "train_models",
    "trial_kfold",
]
