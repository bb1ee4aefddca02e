"""Baseline models of the MMHE benchmark, by modality, in a registry by name.

>>> from mmhe.models import build_model, list_models, model_spec
>>> model = build_model("ststnet", n_classes=3)      # a torch.nn.Module
>>> model_spec("ststnet").defaults.lr                 # the paper's training settings
5e-05

Names: visual "ststnet", "offapexnet", "rcna", "featref" (input (N, 3, 28, 28) flow
image); EEG "eeg_tcn" ((N, T windows, channels x 5 bands)) and "eegnet" ((N, 1,
channels, samples)); physiology "physio_mlp" ((N, features)); classical "svm",
"logreg" (any (N, ...) table); fusion "early_fusion", "cross_attention" (dict of
modalities), "late_fusion", "stacking" (per-modality member models).

`model_spec(name)` tells the training engine how to build a model from the input's
shape (`ModelSpec.shape_kwargs`), how to normalise its input (`norm_axis`: the axis
whose entries get their own z-score, statistics over all other axes of the training
samples) and the published training settings (`defaults`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from typing import Any

from mmhe.errors import ConfigError
from mmhe.models.classical import LogisticRegressionClassifier, SklearnModel, SVMClassifier
from mmhe.models.eeg import EEGTCN, EEGNet
from mmhe.models.fusion import (
    CrossModalAttentionFusion,
    EarlyFusion,
    LateFusion,
    StackingFusion,
    focal_loss,
)
from mmhe.models.physio import PhysioMLP
from mmhe.models.visual import RCNA, FeatRef, OffApexNet, STSTNet

__all__ = [
    "EEGTCN",
    "RCNA",
    "CrossModalAttentionFusion",
    "EEGNet",
    "EarlyFusion",
    "FeatRef",
    "LateFusion",
    "LogisticRegressionClassifier",
    "ModelSpec",
    "OffApexNet",
    "PhysioMLP",
    "STSTNet",
    "SVMClassifier",
    "SklearnModel",
    "StackingFusion",
    "TrainingDefaults",
    "build_model",
    "focal_loss",
    "list_models",
    "model_spec",
]


@dataclass(frozen=True)
class TrainingDefaults:
    """Published (or documented) training settings of a model."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam", "adamw" or "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """How to build, feed and train one registry model.

    kind : "torch" (an nn.Module trained by the engine), "sklearn" (fit/predict_proba)
        or "ensemble" (late fusion / stacking of member models).
    input : "flow_image" (N, 3, 28, 28), "eeg_sequence" (N, T, F), "eeg_raw"
        (N, 1, C, S), "features" (N, F), "table" (N, ...), "multimodal" (dict).
    norm_axis : axis with its own z-score (None: the model scales its own input).
    example_shape : a per-sample input shape for a quick forward pass (dict for
        multimodal models).
    """

    name: str
    factory: Callable[..., Any]
    kind: str
    input: str
    norm_axis: int | None
    paper: str
    defaults: TrainingDefaults = field(default_factory=TrainingDefaults)
    example_shape: Any = None

    def shape_kwargs(self, shape: Any) -> dict[str, Any]:
        """Constructor arguments implied by the input: an array shape (N, ...) or, for
        multimodal models, a dict {modality: (N, ...)}."""
        if self.input == "eeg_sequence":
            return {"n_features": int(shape[2])}
        if self.input == "eeg_raw":
            return {"n_channels": int(shape[2]), "n_samples": int(shape[3])}
        if self.input == "features" and self.kind == "torch":
            return {"n_features": int(prod(shape[1:]))}
        if self.name in ("ststnet", "rcna"):
            return {"in_channels": int(shape[1])}
        if self.name == "early_fusion":
            return {"input_dims": {m: int(prod(s[1:])) for m, s in shape.items()}}
        if self.name == "cross_attention":
            return {"input_shapes": {m: tuple(s[1:]) for m, s in shape.items()}}
        return {}


_FLOW = (3, 28, 28)
_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "ststnet",
            STSTNet,
            "torch",
            "flow_image",
            1,
            "Liong et al., FG 2019",
            TrainingDefaults(epochs=500, batch_size=256, lr=5e-5),
            _FLOW,
        ),
        ModelSpec(
            "offapexnet",
            OffApexNet,
            "torch",
            "flow_image",
            1,
            "Gan et al., SPIC 2019",
            TrainingDefaults(epochs=100, batch_size=64, lr=1e-4),
            _FLOW,
        ),
        ModelSpec(
            "rcna",
            RCNA,
            "torch",
            "flow_image",
            1,
            "Xia et al., IEEE TIP 2020",
            TrainingDefaults(epochs=100, batch_size=64, lr=5e-4, optimizer="sgd", momentum=0.9),
            _FLOW,
        ),
        ModelSpec(
            "featref",
            FeatRef,
            "torch",
            "flow_image",
            1,
            "Zhou et al., Pattern Recognit. 2022",
            TrainingDefaults(epochs=100, batch_size=64, lr=1e-3),
            _FLOW,
        ),
        ModelSpec(
            "eeg_tcn",
            EEGTCN,
            "torch",
            "eeg_sequence",
            -1,
            "Bai et al., arXiv:1803.01271 (TCN)",
            TrainingDefaults(epochs=100, batch_size=64, lr=1e-3),
            (8, 320),
        ),
        ModelSpec(
            "eegnet",
            EEGNet,
            "torch",
            "eeg_raw",
            2,
            "Lawhern et al., J. Neural Eng. 2018",
            TrainingDefaults(epochs=300, batch_size=64, lr=1e-3),
            (1, 64, 256),
        ),
        ModelSpec(
            "physio_mlp",
            PhysioMLP,
            "torch",
            "features",
            -1,
            "multilayer perceptron",
            TrainingDefaults(epochs=200, batch_size=64, lr=1e-3, weight_decay=1e-4),
            (32,),
        ),
        ModelSpec(
            "svm", SVMClassifier, "sklearn", "table", None, "scikit-learn SVC", example_shape=(32,)
        ),
        ModelSpec(
            "logreg",
            LogisticRegressionClassifier,
            "sklearn",
            "table",
            None,
            "scikit-learn LogisticRegression",
            example_shape=(32,),
        ),
        ModelSpec(
            "early_fusion",
            EarlyFusion,
            "torch",
            "multimodal",
            -1,
            "feature concatenation + MLP",
            TrainingDefaults(epochs=200, batch_size=64, lr=1e-3, weight_decay=1e-4),
            {"face": (3, 28, 28), "eeg": (8, 320), "physio": (32,)},
        ),
        ModelSpec(
            "late_fusion",
            LateFusion,
            "ensemble",
            "multimodal",
            None,
            "probability averaging",
            example_shape={"face": (3, 28, 28), "eeg": (8, 320), "physio": (32,)},
        ),
        ModelSpec(
            "stacking",
            StackingFusion,
            "ensemble",
            "multimodal",
            None,
            "stacked generalisation (Wolpert 1992)",
            example_shape={"face": (3, 28, 28), "eeg": (8, 320), "physio": (32,)},
        ),
        ModelSpec(
            "cross_attention",
            CrossModalAttentionFusion,
            "torch",
            "multimodal",
            -1,
            "cross-modal transformer fusion (ME-EEG predecessor corpus)",
            TrainingDefaults(
                epochs=100, batch_size=64, lr=3e-4, optimizer="adamw", weight_decay=1e-2
            ),
            {"face": (3, 28, 28), "eeg": (8, 320), "physio": (32,)},
        ),
    )
}

DEFAULT_MEMBERS: dict[str, str] = {"face": "ststnet", "eeg": "eeg_tcn", "physio": "physio_mlp"}
"""Member model per modality of late fusion and stacking unless ``members`` is given."""


def list_models() -> list[str]:
    """Registry names, in registry order."""
    return list(_SPECS)


def model_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of a registry name; `ConfigError` naming the valid names otherwise."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(_SPECS)}") from None


def build_model(name: str, **kwargs: Any) -> Any:
    """Instantiate a registry model; keyword arguments go to its constructor.

    Late fusion and stacking take ``members`` ({modality: model name}); without it they
    use `DEFAULT_MEMBERS` restricted to ``modalities`` (default all three).
    """
    spec = model_spec(name)
    if spec.kind == "ensemble" and "members" not in kwargs:
        modalities = kwargs.pop("modalities", tuple(DEFAULT_MEMBERS))
        unknown = [m for m in modalities if m not in DEFAULT_MEMBERS]
        if unknown:
            raise ConfigError(
                f"no default member model for modality {unknown}; pass members={{...}}"
            )
        kwargs["members"] = {m: DEFAULT_MEMBERS[m] for m in modalities}
    else:
        kwargs.pop("modalities", None)
    try:
        return spec.factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"cannot build {name!r} with {sorted(kwargs)}: {exc}") from exc
