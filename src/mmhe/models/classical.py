"""Classical baselines: scikit-learn SVM and logistic regression on any feature table,
and the chance references every results table carries (majority class, stratified random).

All are pipelines ``StandardScaler -> classifier``, so the scaling is fit on the
training data only, every time `fit` is called. Inputs of any shape (N, ...) are
flattened to (N, features). `predict_proba` always returns ``n_classes`` columns in
class-index order, with zeros for a class absent from the training data (a LOSO fold
can lack a rare class).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mmhe.errors import ConfigError


class SklearnModel:
    """A scikit-learn classifier behind the `fit` / `predict_proba` interface of `mmhe`.

    estimator : an unfitted scikit-learn classifier (or pipeline) with `predict_proba`.
    n_classes : number of classes K; labels are integers 0..K-1.
    scale : put a `StandardScaler` before the estimator (False: fit the estimator as it
        is, e.g. a user's pipeline with its own preprocessing).
    """

    def __init__(self, estimator: ClassifierMixin, n_classes: int = 3, scale: bool = True) -> None:
        self.estimator = estimator
        self.n_classes = n_classes
        self.scale = scale
        self.pipeline: Pipeline | None = None
        self.constant_: np.ndarray | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnModel:
        """Fit scaler + classifier on X (N, ...) and integer labels y (N,)."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ConfigError(f"labels must be in 0..{self.n_classes - 1}, got {np.unique(y)}")
        present = np.unique(y)
        self.constant_ = None
        if present.size == 1:  # one class only: every probability goes to it
            self.constant_ = np.zeros(self.n_classes)
            self.constant_[present[0]] = 1.0
            return self
        steps = [StandardScaler()] if self.scale else []
        self.pipeline = make_pipeline(*steps, self._estimator_for(y))
        self.pipeline.fit(X, y)
        return self

    def _estimator_for(self, y: np.ndarray) -> ClassifierMixin:
        return clone(self.estimator)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes)."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if self.constant_ is not None:
            return np.tile(self.constant_, (len(X), 1))
        if self.pipeline is None:
            raise ConfigError("call fit() before predict_proba()")
        proba = np.zeros((len(X), self.n_classes))
        classes = self.pipeline.classes_.astype(int)
        if hasattr(self.pipeline, "predict_proba") and hasattr(self.pipeline[-1], "predict_proba"):
            proba[:, classes] = self.pipeline.predict_proba(X)
        else:  # uncalibrated fallback: the predicted class gets probability 1
            proba[np.arange(len(X)), self.pipeline.predict(X).astype(int)] = 1.0
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class index per sample (N,)."""
        return self.predict_proba(X).argmax(axis=1)


class SVMClassifier(SklearnModel):
    """Support vector machine (RBF kernel by default) with sigmoid-calibrated probabilities.

    Probabilities come from `CalibratedClassifierCV(SVC(), ensemble=False)` (Platt
    scaling on internal cross-validated decisions of the training data, up to 5 folds).
    If a training class has a single sample, calibration is impossible and the SVC's
    predicted class gets probability 1.
    """

    def __init__(
        self,
        n_classes: int = 3,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: str | float = "scale",
        class_weight: str | dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            SVC(C=C, kernel=kernel, gamma=gamma, class_weight=class_weight, random_state=seed),
            n_classes,
        )

    def _estimator_for(self, y: np.ndarray) -> ClassifierMixin:
        smallest = int(np.unique(y, return_counts=True)[1].min())
        if smallest < 2:
            return clone(self.estimator)
        return CalibratedClassifierCV(
            clone(self.estimator), method="sigmoid", cv=min(5, smallest), ensemble=False
        )


class LogisticRegressionClassifier(SklearnModel):
    """L2-regularised multinomial logistic regression (scikit-learn `LogisticRegression`)."""

    def __init__(
        self,
        n_classes: int = 3,
        C: float = 1.0,
        class_weight: str | dict | None = None,
        max_iter: int = 2000,
        seed: int = 0,
    ) -> None:
        super().__init__(
            LogisticRegression(
                C=C, class_weight=class_weight, max_iter=max_iter, random_state=seed
            ),
            n_classes,
        )


class ChanceBaseline(SklearnModel):
    """A reference row that ignores its input: scikit-learn `DummyClassifier`.

    strategy : "most_frequent" (the majority class of the training fold; probabilities
        are the training class frequencies) or "stratified" (random labels drawn with the
        training class frequencies, seeded). Fit on the training fold only, like every
        model, so the baseline of a LOSO fold never sees the held-out participant.
    """

    def __init__(self, n_classes: int = 3, strategy: str = "most_frequent", seed: int = 0) -> None:
        if strategy not in ("most_frequent", "stratified"):
            raise ConfigError(f"unknown baseline strategy {strategy!r}")
        super().__init__(DummyClassifier(strategy=strategy, random_state=seed), n_classes)


class MajorityBaseline(ChanceBaseline):
    """Always the training fold's most frequent class."""

    def __init__(self, n_classes: int = 3, seed: int = 0) -> None:
        super().__init__(n_classes, "most_frequent", seed)


class StratifiedBaseline(ChanceBaseline):
    """Random labels with the training fold's class frequencies (seeded)."""

    def __init__(self, n_classes: int = 3, seed: int = 0) -> None:
        super().__init__(n_classes, "stratified", seed)
