"""Baseline models of the MMHE benchmark, by modality, in a registry by name.

>>> from mmhe.models import build_model, list_models, model_spec
>>> model = build_model("ststnet", n_classes=3)      # a torch.nn.Module
>>> model_spec("ststnet").defaults.lr                 # the paper's training settings
5e-05

Names: visual "ststnet", "offapexnet", "rcna", "featref" (input (N, 3, 28, 28) flow
image); EEG "eeg_tcn" ((N, T windows, channels x 5 bands)) and "eegnet" ((N, 1,
channels, samples)); physiology "physio_mlp" ((N, features)); classical "svm",
"logreg" (any (N, ...) table); chance references "majority" and "stratified" (ignore
their input; every benchmark table carries them); fusion "early_fusion", "cross_attention" (dict of
modalities), "late_fusion", "stacking" (per-modality member models).
Visual "mmhe_net" (the dataset paper's own network) takes (N, 3, 128, 128).

`model_spec(name)` tells the training engine how to build a model from the input's
shape (`ModelSpec.shape_kwargs`), how to normalise its input (`norm_axis`: the axis
whose entries get their own z-score, statistics over all other axes of the training
samples) and the published training settings (`defaults`).

Bring your own model: `register(name, factory, modalities, defaults)` adds any
`torch.nn.Module` factory or scikit-learn estimator / pipeline to the registry, and
`run_benchmark`, `run_folds` and `fit_predict` then train it like the baselines:

>>> import torch
>>> def tiny(n_classes, input_shape):
...     return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(n_classes))
>>> spec = register("tiny_eeg", tiny, ["eeg"], {"epochs": 20, "lr": 1e-2}, overwrite=True)
>>> spec.kind, spec.modalities, spec.defaults.epochs
('auto', ('eeg',), 20)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from math import prod
from typing import Any

from mmhe.errors import ConfigError
from mmhe.models.classical import (
    LogisticRegressionClassifier,
    MajorityBaseline,
    SklearnModel,
    StratifiedBaseline,
    SVMClassifier,
)
from mmhe.models.eeg import EEGTCN, EEGNet
from mmhe.models.fusion import (
    CrossModalAttentionFusion,
    EarlyFusion,
    LateFusion,
    StackingFusion,
    focal_loss,
)
from mmhe.models.physio import PhysioMLP
from mmhe.models.visual import RCNA, FeatRef, MMHENet, OffApexNet, STSTNet

__all__ = [
    "EEGTCN",
    "RCNA",
    "CrossModalAttentionFusion",
    "EEGNet",
    "EarlyFusion",
    "FeatRef",
    "LateFusion",
    "LogisticRegressionClassifier",
    "MMHENet",
    "MajorityBaseline",
    "ModelSpec",
    "OffApexNet",
    "PhysioMLP",
    "STSTNet",
    "SVMClassifier",
    "SklearnModel",
    "StackingFusion",
    "StratifiedBaseline",
    "TrainingDefaults",
    "build_model",
    "focal_loss",
    "list_models",
    "model_spec",
    "register",
    "unregister",
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
        or "ensemble" (late fusion / stacking of member models); "auto" for a registered
        factory whose product decides (an nn.Module is trained as torch, anything with
        fit/predict_proba as scikit-learn).
    input : "flow_image" (N, 3, 28, 28), "eeg_sequence" (N, T, F), "eeg_raw"
        (N, 1, C, S), "features" (N, F), "table" (N, ...), "multimodal" (dict),
        "array" (a registered one-modality model: whatever that modality's array is).
    norm_axis : axis with its own z-score (None: the model scales its own input).
    paper : the source the model implements (paper or library).
    example_shape : a per-sample input shape for a quick forward pass (dict for
        multimodal models).
    declared_modalities : modalities a registered model accepts (() = derived from input).
    source : where the factory comes from ("mmhe" for the baselines, else
        ``module.qualname`` of the registered factory).
    accepts : constructor keywords the factory takes (None: any, it has ``**kwargs``);
        the engine leaves out the standard ones (n_classes, input_shape, seed) it does
        not take.
    `modalities` are the store modalities the model can take (declared, else derived
    from ``input``).
    """

    name: str
    factory: Callable[..., Any]
    kind: str
    input: str
    norm_axis: int | None
    paper: str
    defaults: TrainingDefaults = field(default_factory=TrainingDefaults)
    example_shape: Any = None
    declared_modalities: tuple[str, ...] = ()
    source: str = "mmhe"
    accepts: frozenset[str] | None = None

    @property
    def registered(self) -> bool:
        """True for a model added with `register` (not one of the baselines)."""
        return self.source != "mmhe"

    @property
    def modalities(self) -> tuple[str, ...]:
        """Store modalities this model takes: ("face",), ("eeg",), ("physio",), all three
        for tables and fusion, () for the chance baselines (they ignore their input)."""
        if self.declared_modalities:
            return self.declared_modalities
        if self.name in CHANCE_BASELINES:
            return ()
        return INPUT_MODALITIES.get(self.input, ("face", "eeg", "physio"))

    def shape_kwargs(self, shape: Any) -> dict[str, Any]:
        """Constructor arguments implied by the input: an array shape (N, ...) or, for
        multimodal models, a dict {modality: (N, ...)}."""
        if self.registered:
            per_sample = (
                {m: tuple(int(d) for d in s[1:]) for m, s in shape.items()}
                if isinstance(shape, Mapping)
                else tuple(int(d) for d in shape[1:])
            )
            return {"input_shape": per_sample}
        if self.input == "eeg_sequence":
            return {"n_features": int(shape[2])}
        if self.input == "eeg_raw":
            return {"n_channels": int(shape[2]), "n_samples": int(shape[3])}
        if self.input == "features" and self.kind == "torch":
            return {"n_features": int(prod(shape[1:]))}
        if self.name in ("ststnet", "rcna"):
            return {"in_channels": int(shape[1])}
        if self.name == "mmhe_net":
            return {"in_channels": int(shape[1]), "image_size": int(shape[2])}
        if self.name == "early_fusion":
            return {"input_dims": {m: int(prod(s[1:])) for m, s in shape.items()}}
        if self.name == "cross_attention":
            return {"input_shapes": {m: tuple(s[1:]) for m, s in shape.items()}}
        return {}


INPUT_MODALITIES: dict[str, tuple[str, ...]] = {
    "flow_image": ("face",),
    "eeg_sequence": ("eeg",),
    "eeg_raw": ("eeg",),
    "features": ("physio",),
    "table": ("face", "eeg", "physio"),
    "multimodal": ("face", "eeg", "physio"),
}
"""Input layout -> the store modalities that can feed it (``eeg_raw``: raw EEG windows,
``eeg_sequence``: band-power windows; both come from the store's EEG)."""
INPUT_DESCRIPTIONS: dict[str, str] = {
    "flow_image": "optical-flow image (N, 3, 28, 28)",
    "eeg_sequence": "EEG band-power windows (N, T, channels x bands)",
    "eeg_raw": "raw EEG windows at 128 Hz (N, 1, channels, samples)",
    "features": "feature vector (N, F)",
    "table": "any table (N, ...), flattened",
    "multimodal": "dict {modality: array}",
}
CHANCE_BASELINES: tuple[str, ...] = ("majority", "stratified")
"""Registry names of the chance references added to every benchmark table."""

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
            "mmhe_net",
            MMHENet,
            "torch",
            "flow_image",
            1,
            "MMHE dataset paper, visual baseline figure",
            TrainingDefaults(),
            (3, 128, 128),
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
            "majority",
            MajorityBaseline,
            "sklearn",
            "table",
            None,
            "scikit-learn DummyClassifier(strategy='most_frequent')",
            example_shape=(1,),
        ),
        ModelSpec(
            "stratified",
            StratifiedBaseline,
            "sklearn",
            "table",
            None,
            "scikit-learn DummyClassifier(strategy='stratified')",
            example_shape=(1,),
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


_BUILTIN = frozenset(_SPECS)
REGISTRY_MODALITIES: tuple[str, ...] = ("face", "eeg", "physio")


def _accepted_keywords(factory: Callable[..., Any]) -> frozenset[str] | None:
    target = factory.__init__ if isinstance(factory, type) else factory
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.name != "self")


def _kind_of(factory: Callable[..., Any]) -> str:
    if isinstance(factory, type):
        import torch

        if issubclass(factory, torch.nn.Module):
            return "torch"
        if hasattr(factory, "fit") and hasattr(factory, "predict_proba"):
            return "sklearn"
    return "auto"


def register(
    name: str,
    factory: Callable[..., Any],
    modalities: Sequence[str],
    defaults: TrainingDefaults | Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    norm_axis: int | str | None = "auto",
    description: str = "",
    overwrite: bool = False,
) -> ModelSpec:
    """Add a model to the registry so the benchmark trains it like the baselines.

    name : registry name (a baseline's name is refused).
    factory : called with ``n_classes`` (int), ``input_shape`` (the per-sample shape,
        e.g. (8, 310) for EEG band power; a dict {modality: shape} when several
        modalities are given) and ``seed`` for scikit-learn models, each only if it takes
        that keyword (or ``**kwargs``), plus a run's ``model_kw``. It returns a
        ``torch.nn.Module`` (trained by the engine: its forward takes a float tensor
        (N, *input_shape), or for several modalities a dict of them plus ``present``
        (N, M); it returns logits (N, n_classes)) or an unfitted scikit-learn
        estimator / pipeline with ``predict_proba`` (fit as it is: no scaler is added).
    modalities : what the model takes, some of "face", "eeg", "physio"; one modality
        gives the model that array, several a dict.
    defaults : `TrainingDefaults` or a dict of its fields (epochs, batch_size, lr,
        optimizer, momentum, weight_decay).
    kind : "torch" or "sklearn"; default inferred from a class factory, else from what
        the factory returns ("auto").
    norm_axis : the engine's train-fold z-score axis ("auto": the channel axis for face
        flow images, the last axis otherwise; None: no engine scaling, as for
        scikit-learn classes).
    overwrite : replace a model registered earlier under the same name.
    Returns the `ModelSpec` (also in `model_spec(name)` and `list_models()`).
    """
    if name in _BUILTIN:
        raise ConfigError(f"{name!r} is a baseline of mmhe; register your model under another name")
    if name in _SPECS and not overwrite:
        raise ConfigError(f"{name!r} is already registered; pass overwrite=True to replace it")
    if not callable(factory):
        raise ConfigError(f"the factory of {name!r} is not callable: {factory!r}")
    modalities = tuple(modalities)
    wrong = [m for m in modalities if m not in REGISTRY_MODALITIES]
    if wrong or not modalities:
        raise ConfigError(
            f"{name!r}: modalities must be some of {REGISTRY_MODALITIES}, got {list(modalities)}"
        )
    if isinstance(defaults, Mapping):
        known = {f.name for f in fields(TrainingDefaults)}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ConfigError(f"{name!r}: unknown training defaults {unknown}; use {sorted(known)}")
        defaults = TrainingDefaults(**defaults)
    kind = kind or _kind_of(factory)
    if kind not in ("torch", "sklearn", "auto"):
        raise ConfigError(f"{name!r}: kind must be 'torch' or 'sklearn', got {kind!r}")
    if norm_axis == "auto":
        norm_axis = None if kind == "sklearn" else (1 if modalities == ("face",) else -1)
    spec = ModelSpec(
        name,
        factory,
        kind,
        "multimodal" if len(modalities) > 1 else "array",
        norm_axis,  # type: ignore[arg-type]
        description or "registered model",
        defaults or TrainingDefaults(),
        declared_modalities=modalities,
        source=f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')}",
        accepts=_accepted_keywords(factory),
    )
    _SPECS[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a registered model (baselines cannot be removed)."""
    if name in _BUILTIN:
        raise ConfigError(f"{name!r} is a baseline of mmhe and cannot be removed")
    _SPECS.pop(name, None)


def ensure_registered(spec: ModelSpec) -> None:
    """Register ``spec`` in this process if it is missing (Dask workers start without the
    models a user registered in the client process)."""
    if spec.registered and spec.name not in _SPECS:
        _SPECS[spec.name] = spec


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
    if spec.registered:
        return _build_registered(spec, kwargs)
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


_STANDARD_KEYWORDS = frozenset({"n_classes", "input_shape", "seed"})


def _build_registered(spec: ModelSpec, kwargs: dict[str, Any]) -> Any:
    """Call a registered factory; a scikit-learn product is wrapped in `SklearnModel`."""
    kwargs = {k: v for k, v in kwargs.items() if k != "modalities"}
    n_classes = int(kwargs.get("n_classes", 3))
    if spec.accepts is not None:
        kwargs = {
            k: v for k, v in kwargs.items() if k in spec.accepts or k not in _STANDARD_KEYWORDS
        }
    try:
        product = spec.factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"cannot build {spec.name!r} with {sorted(kwargs)}: {exc}") from exc
    import torch

    if isinstance(product, torch.nn.Module) or isinstance(product, SklearnModel):
        return product
    if hasattr(product, "fit") and hasattr(product, "predict_proba"):
        return SklearnModel(product, n_classes, scale=False)
    raise ConfigError(
        f"the factory of {spec.name!r} returned {type(product).__name__}: expected a "
        "torch.nn.Module or a scikit-learn estimator with predict_proba"
    )
