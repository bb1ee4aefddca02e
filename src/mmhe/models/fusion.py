"""Multimodal fusion: early, late (probability averaging and stacking), cross-modal attention.

Input convention of the neural fusion models: a dict ``{modality: tensor (N, ...)}``
plus ``"present"``: float (N, M), 1.0 where the sample has that modality, in the order
of ``model.modalities``. The training engine builds it from arrays where a missing
modality is a sample whose values are all NaN.

Missing-modality policy (the same at training and at test time; no sample is ever
dropped):

- `EarlyFusion`: a missing modality's features are zeros (after the engine's z-scoring,
  zero is the training mean) and the presence flags are appended to the input.
- `CrossModalAttentionFusion`: a missing modality's token sequence is replaced by a
  learned "missing" token of that modality; the presence flags also reach the
  classifier.
- `LateFusion`: probabilities are averaged over the modalities the sample has; a
  sample with none gets the training class frequencies.
- `StackingFusion`: a missing modality contributes uniform probabilities 1/K and a zero
  presence flag to the meta-classifier's input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from mmhe.errors import ConfigError


def focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0) -> Tensor:
    """Mean focal loss -(1 - p_t)^gamma log p_t (Lin et al., ICCV 2017); gamma 0 = cross-entropy.

    logits (N, K), targets (N,) int64.
    """
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    if gamma == 0:
        return -log_p.mean()
    return (-((1.0 - log_p.exp()).clamp_min(0.0) ** gamma) * log_p).mean()


class EarlyFusion(nn.Module):
    """Early fusion: concatenated per-modality feature vectors -> MLP.

    input_dims : {modality: number of features} (each modality's input is flattened).
    Input dict {modality: (N, ...), "present": (N, M)} -> logits (N, n_classes). The
    MLP input is [x_1 * present_1, ..., x_M * present_M, present] (zero features plus a
    flag for a missing modality).
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        n_classes: int = 3,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if not input_dims:
            raise ConfigError("EarlyFusion needs at least one modality")
        self.modalities = tuple(input_dims)
        width = sum(int(d) for d in input_dims.values()) + len(self.modalities)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """inputs {modality: (N, ...), "present": (N, M)} -> logits (N, n_classes)."""
        present = inputs["present"]
        parts = [
            inputs[m].flatten(1) * present[:, i : i + 1] for i, m in enumerate(self.modalities)
        ]
        return self.net(torch.cat([*parts, present], dim=1))


class _Tokenizer(nn.Module):
    """Turns one modality into a token sequence (N, L, d) according to its shape:
    image (C, H, W) -> non-overlapping patch embedding (a spatial transformer's input);
    sequence (T, F) -> a 1-D convolution over time (a temporal-convolution stem);
    vector (P,) -> one token per feature (value x learned vector + feature embedding)."""

    def __init__(self, shape: Sequence[int], d_model: int, patch: int) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) == 3:
            c, h, w = self.shape
            if h % patch or w % patch:
                raise ConfigError(f"image of {h} x {w} is not divisible into {patch}-pixel patches")
            self.embed = nn.Conv2d(c, d_model, patch, stride=patch)
            length = (h // patch) * (w // patch)
        elif len(self.shape) == 2:
            t, f = self.shape
            self.embed = nn.Conv1d(f, d_model, 3, padding=1)
            length = t
        elif len(self.shape) == 1:
            length = self.shape[0]
            self.value = nn.Parameter(torch.randn(1, length, d_model) * 0.02)
        else:
            raise ConfigError(f"cannot tokenise inputs of shape {self.shape}")
        self.position = nn.Parameter(torch.randn(1, length, d_model) * 0.02)
        self.length = length

    def forward(self, x: Tensor) -> Tensor:
        if len(self.shape) == 3:
            tokens = self.embed(x).flatten(2).transpose(1, 2)
        elif len(self.shape) == 2:
            tokens = F.gelu(self.embed(x.transpose(1, 2))).transpose(1, 2)
        else:
            tokens = x[:, :, None] * self.value
        return tokens + self.position


class CrossModalAttentionFusion(nn.Module):
    """Cross-modal attention fusion, after the ME-EEG fusion network of the predecessor corpus.

    Each modality becomes a token sequence (flow image -> patch tokens of a spatial
    transformer; EEG band-feature sequence -> temporal-convolution tokens; feature
    vectors -> one token per feature), encoded by its own transformer encoder; then
    every stream attends to the tokens of the other streams (cross-attention with
    residual, layer norm and feed-forward); the mean token of every stream and the
    presence flags are concatenated and classified. Focal loss (``focal_gamma``,
    0 = cross-entropy) is the training loss, as in the predecessor.

    input_shapes : {modality: per-sample shape}, e.g. {"face": (3, 28, 28),
        "eeg": (8, 320), "physio": (32,)}.
    Input dict {modality: (N, *shape), "present": (N, M)} -> logits (N, n_classes).
    A missing modality's tokens are replaced by its learned "missing" token.
    """

    def __init__(
        self,
        input_shapes: Mapping[str, Sequence[int]],
        n_classes: int = 3,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        patch: int = 4,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if not input_shapes:
            raise ConfigError("CrossModalAttentionFusion needs at least one modality")
        self.modalities = tuple(input_shapes)
        self.focal_gamma = focal_gamma
        self.tokenizers = nn.ModuleDict(
            {m: _Tokenizer(shape, d_model, patch) for m, shape in input_shapes.items()}
        )
        self.missing = nn.Parameter(torch.randn(len(self.modalities), d_model) * 0.02)

        def encoder() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(
                d_model, heads, 2 * d_model, dropout, batch_first=True, norm_first=True
            )
            return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        self.encoders = nn.ModuleDict({m: encoder() for m in self.modalities})
        self.cross = nn.ModuleDict(
            {
                m: nn.MultiheadAttention(d_model, heads, dropout, batch_first=True)
                for m in self.modalities
            }
        )
        self.cross_norm = nn.ModuleDict({m: nn.LayerNorm(d_model) for m in self.modalities})
        self.cross_ff = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.LayerNorm(d_model),
                    nn.Linear(d_model, 2 * d_model),
                    nn.GELU(),
                    nn.Dropout(dropout),
                    nn.Linear(2 * d_model, d_model),
                )
                for m in self.modalities
            }
        )
        width = len(self.modalities) * (d_model + 1)
        self.head = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_model, n_classes),
        )

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """inputs {modality: (N, *shape), "present": (N, M)} -> logits (N, n_classes)."""
        present = inputs["present"]
        streams = {}
        for i, m in enumerate(self.modalities):
            tokens = self.tokenizers[m](inputs[m])
            has = present[:, i].view(-1, 1, 1) > 0
            tokens = torch.where(has, tokens, self.missing[i].expand_as(tokens))
            streams[m] = self.encoders[m](tokens)
        pooled = []
        for m in self.modalities:
            own = streams[m]
            others = [streams[o] for o in self.modalities if o != m]
            if others:
                context = torch.cat(others, dim=1)
                attended, _ = self.cross[m](own, context, context, need_weights=False)
                own = self.cross_norm[m](own + attended)
                own = own + self.cross_ff[m](own)
            pooled.append(own.mean(dim=1))
        return self.head(torch.cat([*pooled, present], dim=1))

    def training_loss(self, inputs: Mapping[str, Tensor], targets: Tensor) -> Tensor:
        """Focal loss (cross-entropy when focal_gamma is 0) of the fused prediction."""
        return focal_loss(self(inputs), targets, self.focal_gamma)


class LateFusion:
    """Late fusion by probability averaging over the modalities a sample has.

    members : {modality: registry model name}, e.g. {"face": "ststnet", "eeg":
        "eeg_tcn"}; each member is trained on its own modality by the training engine
        (on the training samples that have it) and predicts every test sample that has
        it; `combine` averages.
    """

    def __init__(
        self,
        members: Mapping[str, str],
        n_classes: int = 3,
        member_kw: Mapping[str, dict] | None = None,
    ) -> None:
        if not members:
            raise ConfigError("late fusion needs at least one member model")
        self.members = dict(members)
        self.n_classes = n_classes
        self.member_kw = dict(member_kw or {})
        self.modalities = tuple(self.members)

    def combine(
        self, probabilities: Mapping[str, np.ndarray], present: np.ndarray, prior: np.ndarray
    ) -> np.ndarray:
        """Mean of member probabilities (N, K) over present modalities; ``prior`` (K,) if none.

        present : bool (N, M) in ``self.modalities`` order.
        """
        stack = np.stack([probabilities[m] for m in self.modalities], axis=1)  # N, M, K
        weights = np.asarray(present, dtype=float)[:, :, None]
        total = weights.sum(axis=1)
        mean = (stack * weights).sum(axis=1) / np.maximum(total, 1.0)
        return np.where(total > 0, mean, np.asarray(prior, dtype=float)[None, :])


class StackingFusion(LateFusion):
    """Stacking: a logistic regression on the members' out-of-fold probabilities.

    The meta-features of a sample are every member's probabilities (uniform 1/K where
    the modality is missing) and the presence flags. The training engine produces
    them by an inner grouped k-fold (``inner_folds``) over the TRAINING participants of
    the outer fold only, fits the meta-classifier on them, refits each member on the
    whole training part and applies the meta-classifier to the test probabilities.
    """

    def __init__(
        self,
        members: Mapping[str, str],
        n_classes: int = 3,
        member_kw: Mapping[str, dict] | None = None,
        inner_folds: int = 3,
        C: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(members, n_classes, member_kw)
        if inner_folds < 2:
            raise ConfigError(f"stacking needs inner_folds >= 2, got {inner_folds}")
        self.inner_folds, self.C, self.seed = inner_folds, C, seed
        self.meta: LogisticRegression | None = None
        self.constant_: np.ndarray | None = None

    def meta_features(
        self, probabilities: Mapping[str, np.ndarray], present: np.ndarray
    ) -> np.ndarray:
        """(N, M * K + M) meta-features: probabilities (uniform where missing) + flags."""
        present = np.asarray(present, dtype=bool)
        uniform = 1.0 / self.n_classes
        parts = [
            np.where(present[:, [i]], probabilities[m], uniform)
            for i, m in enumerate(self.modalities)
        ]
        return np.concatenate([*parts, present.astype(float)], axis=1)

    def fit_meta(
        self, probabilities: Mapping[str, np.ndarray], present: np.ndarray, y: np.ndarray
    ) -> StackingFusion:
        """Fit the meta logistic regression on out-of-fold training probabilities."""
        y = np.asarray(y)
        classes = np.unique(y)
        self.meta, self.constant_ = None, None
        if classes.size == 1:
            self.constant_ = np.eye(self.n_classes)[classes[0]]
            return self
        self.meta = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        self.meta.fit(self.meta_features(probabilities, present), y)
        return self

    def combine(
        self,
        probabilities: Mapping[str, np.ndarray],
        present: np.ndarray,
        prior: np.ndarray | None = None,
    ) -> np.ndarray:
        """Meta-classifier probabilities (N, K)."""
        n = len(np.asarray(present))
        if self.constant_ is not None:
            return np.tile(self.constant_, (n, 1))
        if self.meta is None:
            raise ConfigError("fit_meta() must run before combine()")
        out = np.zeros((n, self.n_classes))
        out[:, self.meta.classes_.astype(int)] = self.meta.predict_proba(
            self.meta_features(probabilities, present)
        )
        return out
