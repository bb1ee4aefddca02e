"""Dropout masks drawn from each model's own generator, for exact per-fold training.

`torch.func.vmap` runs the random draws of many models as one draw from one generator,
so a fold's dropout masks would depend on which other folds share its group. Here the
masks are drawn outside the model instead: `DropoutMasks` is a
`torch.overrides.TorchFunctionMode` that, around a model's forward,

- records every dropout call (``record=True``): kind, input shape, probability;
- or replaces each call by a multiplication with the next given mask (0 or 1 / (1 - p)),
  masks drawn per model by `draw_masks` from that model's `torch.Generator`.

Covered: ``F.dropout`` (`nn.Dropout`), ``F.dropout1d/2d/3d`` (whole channels) and a direct
``F.scaled_dot_product_attention`` call with ``dropout_p`` (its reference formula with the
mask on the attention weights). Not covered, reported in ``uncontrolled``: any other
random operation, alpha dropout, and the attention-weight dropout inside
``F.multi_head_attention_forward`` (`nn.MultiheadAttention`, `nn.TransformerEncoderLayer`),
which happens in torch's own code beyond the reach of a function mode. A model with such
operations trains with torch's generator (see `mmhe.evaluation.engine`).

A mask has the distribution of the original dropout (keep with probability 1 - p, kept
values scaled by 1 / (1 - p)), not its random numbers.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from mmhe.errors import ConfigError

_FEATURE_DROPOUT = {F.dropout1d: 1, F.dropout2d: 2, F.dropout3d: 3}
_RANDOM_NAMES = frozenset(
    "rand randn randint rand_like randn_like randint_like randperm bernoulli bernoulli_ "
    "normal normal_ uniform_ exponential_ geometric_ cauchy_ log_normal_ random_ "
    "multinomial poisson alpha_dropout feature_alpha_dropout rrelu rrelu_ gumbel_softmax "
    "native_dropout".split()
)
_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


@dataclass(frozen=True)
class DropoutCall:
    """One dropout call of a forward pass: ``shape`` is the mask's (the input's, with 1 on
    the spatial axes for channel dropout; the attention weights' for attention)."""

    kind: str  # "elementwise", "channel" or "attention"
    shape: tuple[int, ...]
    p: float


class DropoutMasks(TorchFunctionMode):
    """Record the dropout calls of a forward pass, or apply given masks to them.

    masks : None to record (calls run as usual), else one mask per call, in call order.
    After a recording pass: ``calls`` (list of `DropoutCall`), ``uncontrolled`` (names of
    random operations this mode does not replace) and ``output_bytes`` (bytes of every
    tensor the forward produced: an estimate of its activation memory).
    """

    def __init__(self, masks: Sequence[Tensor] | None = None) -> None:
        super().__init__()
        self.record = masks is None
        self.masks = list(masks or [])
        self.used = 0
        self.calls: list[DropoutCall] = []
        self.uncontrolled: list[str] = []
        self.output_bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.dropout or func in _FEATURE_DROPOUT:
            return self._dropout(func, args, kwargs)
        if func is F.scaled_dot_product_attention:
            return self._attention(func, args, kwargs)
        name = getattr(func, "__name__", "")
        if self.record:
            if name in _RANDOM_NAMES or (
                func is F.multi_head_attention_forward and _attention_dropout(args, kwargs)
            ):
                self.uncontrolled.append(name)
        out = func(*args, **kwargs)
        if self.record:
            self.output_bytes += _nbytes(out)
        return out

    def _next_mask(self, call: DropoutCall) -> Tensor | None:
        if self.record:
            self.calls.append(call)
            return None
        if self.used >= len(self.masks):
            raise ConfigError(
                f"the model's forward calls dropout more often than its first forward "
                f"({len(self.masks)} calls); its dropout must not depend on the data"
            )
        mask = self.masks[self.used]
        self.used += 1
        return mask

    def _dropout(self, func: Any, args: tuple, kwargs: dict) -> Tensor:
        x = args[0]
        p = float(args[1] if len(args) > 1 else kwargs.get("p", 0.5))
        training = bool(args[2] if len(args) > 2 else kwargs.get("training", True))
        inplace = bool(args[3] if len(args) > 3 else kwargs.get("inplace", False))
        if not training or p == 0:
            return x
        if func is F.dropout:
            call = DropoutCall("elementwise", tuple(x.shape), p)
        else:
            spatial = _FEATURE_DROPOUT[func]
            keep = 2 if x.dim() == spatial + 2 else 1  # batched (N, C, ...) or (C, ...)
            call = DropoutCall("channel", tuple(x.shape[:keep]) + (1,) * (x.dim() - keep), p)
        mask = self._next_mask(call)
        if mask is None:
            out = func(*args, **kwargs)
            self.output_bytes += _nbytes(out)
            return out
        return x.mul_(mask) if inplace else x * mask

    def _attention(self, func: Any, args: tuple, kwargs: dict) -> Tensor:
        a = dict(zip(_SDPA_ARGS, args, strict=False)) | kwargs
        p = float(a.get("dropout_p", 0.0))
        if p == 0:
            out = func(*args, **kwargs)
            self.output_bytes += _nbytes(out) if self.record else 0
            return out
        q, k, v = a["query"], a["key"], a["value"]
        shape = (*q.shape[:-1], k.shape[-2])
        mask = self._next_mask(DropoutCall("attention", tuple(shape), p))
        if mask is None:
            out = func(*args, **kwargs)
            self.output_bytes += _nbytes(out)
            return out
        return _attention_reference(q, k, v, a, mask)


def _attention_dropout(args: tuple, kwargs: dict) -> bool:
    """Whether a `F.multi_head_attention_forward` call drops attention weights."""
    bound = _MHA_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    return bool(bound.arguments["training"]) and float(bound.arguments["dropout_p"]) > 0


def _attention_reference(q: Tensor, k: Tensor, v: Tensor, a: dict, mask: Tensor) -> Tensor:
    """softmax(q k^T * scale + bias) * mask @ v: the formula torch documents for
    `scaled_dot_product_attention`, with the given dropout mask on the weights."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = a.get("scale") or 1.0 / math.sqrt(q.shape[-1])
    if a.get("enable_gqa"):
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    weights = q @ k.transpose(-2, -1) * scale
    if a.get("is_causal"):
        causal = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        weights = weights.masked_fill(~causal, float("-inf"))
    attn_mask = a.get("attn_mask")
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attn_mask, float("-inf"))
        else:
            weights = weights + attn_mask
    return (torch.softmax(weights, dim=-1) * mask) @ v


def _nbytes(out: Any) -> int:
    if isinstance(out, Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, tuple | list):
        return sum(_nbytes(o) for o in out)
    return 0


def draw_masks(
    calls: Sequence[DropoutCall],
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """One mask per recorded call, from ``generator``: 0 or 1 / (1 - p), ``dtype``."""
    masks = []
    for call in calls:
        if call.p >= 1:
            masks.append(torch.zeros(call.shape, dtype=dtype, device=device))
            continue
        keep = torch.rand(call.shape, generator=generator, device=device) >= call.p
        masks.append(keep.to(dtype).mul_(1.0 / (1.0 - call.p)))
    return masks


def recorded_loss(
    model: nn.Module, x: Any, y: Tensor, masks: Sequence[Tensor] | None = None
) -> tuple[Tensor, DropoutMasks]:
    """Loss of a training-mode forward of ``model`` (its ``training_loss`` when it has
    one, else the cross-entropy of its logits) with its dropout calls recorded, or, given
    ``masks``, replaced by them (`DropoutMasks`)."""
    recorder = DropoutMasks(masks)
    with recorder:
        if hasattr(model, "training_loss"):
            return model.training_loss(x, y), recorder
        logits = model(x)
    return F.cross_entropy(logits, y), recorder


def dropout_calls(model: nn.Module, x: Any, y: Tensor) -> list[DropoutCall]:
    """The dropout calls of one training step of ``model`` on (x, y) (a copy runs it)."""
    with torch.no_grad():
        _, recorder = recorded_loss(copy.deepcopy(model).train(), x, y)
    return recorder.calls
