"""Train many copies of one model at once (folds, seeds) with torch.func, on any device.

>>> trained = train_models(lambda: build_model("ststnet"), members, settings)  # doctest: +SKIP
>>> trained[0].model                  # an ordinary STSTNet in eval mode, fold 0's weights

`train_models(factory, members, settings, device)` trains one model per `Member` (its
own normalised inputs, labels and seeds) and returns them trained. The model is whatever
``factory()`` returns, an ordinary `torch.nn.Module` (the registry's, or a user's);
nothing about it is rewritten.

How members train together
    A group of F members is one stacked model: their parameters and buffers (BatchNorm
    statistics) are stacked along a leading axis by `torch.func.stack_module_state`, one
    training step runs the module's own forward for every member at once
    (`torch.func.vmap` over `torch.func.functional_call`, each member on its own batch)
    and one `torch.optim` optimiser updates the stacked tensors. A group of one runs the
    same function without `vmap`.

Why a member's result does not depend on its group (tested, to float tolerance)
    - its model is built by ``factory()`` under its own seed (`fold_seeds`);
    - its batches are those of a plain shuffled loop over its own samples (`batch_order`);
    - its dropout masks come from its own `torch.Generator` (`mmhe.evaluation.dropout`);
    - its BatchNorm statistics are its own slice of the stacked buffers;
    - Adam, AdamW and SGD are element-wise, so one optimiser over stacked tensors equals
      one optimiser per member when every member steps at every step: a group holds
      members with the same number of steps per epoch, and early-stopped members keep
      training to the end of the group but get their best state back.
    Only the floating-point rounding differs (vmap runs grouped convolutions).
    A model with random operations `DropoutMasks` cannot replace (attention-weight
    dropout inside `nn.MultiheadAttention`, alpha dropout) draws them from torch's
    generator; its members then train one per group unless ``folds_per_group`` asks for
    more, in which case their results are equal in distribution, not in value.

Group size (`plan_groups`)
    On a GPU members are stacked up to ``CUDA_MAX_GROUP`` (and the memory budget): a
    small model fills a GPU only that way. On the CPU stacking pays when framework
    overhead per operation dominates (small layers, small batches) and costs when the
    operations are large: `vmap` turns a convolution of F models into a grouped
    convolution, which oneDNN runs 2-3x slower per model than F separate ones. The
    engine therefore stacks on the CPU only models whose training step costs less than
    ``CPU_STACKING_MAX_FLOPS`` per batch (measured with `torch.utils.flop_counter`);
    figures in ``benchmarks/bench_training.py``. Image batches (N, C, H, W) of a group
    of one are fed in channels-last layout on the CPU, where oneDNN's convolutions and
    pooling run fastest. A fixed memory budget (``CPU_MEMORY_BYTES``; a CUDA device's
    half) caps the group, so the grouping, and hence every number, is the same on every
    run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from mmhe.errors import ConfigError
from mmhe.evaluation.dropout import DropoutCall, DropoutMasks, draw_masks
from mmhe.evaluation.settings import TrainSettings, resolve_device, seeded_torch

CPU_STACKING_MAX_FLOPS = 10e6
"""Largest training-step cost (FLOPs per batch, forward + backward) stacked on the CPU."""
CPU_MAX_GROUP = 8
CUDA_MAX_GROUP = 64
CPU_MEMORY_BYTES = 2 * 2**30
"""Memory budget of one group on the CPU (data, parameters, optimiser state, activations)."""


@dataclass
class Member:
    """One model to train: a fold (or a fold and a seed) with its own data.

    x : float32 tensor (n, ...) or dict {modality: (n, ...), "present": (n, M)},
        normalised; any device (moved once to the training device).
    y : (n,) int64 class indices.
    seeds : (model initialisation, batch order, dropout, validation split), as
        `mmhe.evaluation.settings.fold_seeds` returns them.
    x_val, y_val : inner validation rows for early stopping, or None.
    """

    x: Any
    y: Tensor
    seeds: tuple[int, int, int, int]
    x_val: Any = None
    y_val: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Trained:
    """A trained member: the module (eval mode, on the training device) and facts."""

    model: nn.Module
    info: dict[str, Any]


@dataclass(frozen=True)
class StepProfile:
    """What one training step of a model costs, measured on a batch of ``batch_size``.

    flops : forward + backward FLOPs of the batch (`torch.utils.flop_counter`).
    member_bytes : one member's data, parameters (x 4: weights, gradients, two optimiser
        moments) and activations (x 2: kept for the backward pass, and their gradients).
    exact : every random operation of the forward is a dropout `DropoutMasks` replaces.
    """

    batch_size: int
    flops: float
    member_bytes: int
    exact: bool
    uncontrolled: tuple[str, ...]


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a final batch of one sample joins the previous
    one (BatchNorm cannot train on a single sample)."""
    parts = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(parts) > 1 and len(parts[-1]) == 1:
        last = parts.pop()
        parts[-1] = np.concatenate([parts[-1], last])
    return parts


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of `batches` of n samples."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def batch_order(seed: int, n: int, batch_size: int, epochs: int) -> Iterator[list[np.ndarray]]:
    """The batches of every epoch of a shuffled loop over n samples (one Generator)."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        yield batches(rng.permutation(n), batch_size)


# ------------------------------------------------------------------ the model as a function


class _Method(nn.Module):
    """Calls one method of the wrapped module (`functional_call` only calls forward)."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args: Any) -> Any:
        return getattr(self.module, self.method)(*args)


def _prefixed(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {f"module.{k}": v for k, v in state.items()}


def _loss_function(skeleton: nn.Module) -> Callable[..., Tensor]:
    """loss(params, buffers, x, y, masks) of one member: the model's ``training_loss``
    when it has one, else the cross-entropy of its logits."""
    own_loss = hasattr(skeleton, "training_loss")
    call = _Method(skeleton, "training_loss" if own_loss else "forward")

    def loss(params: dict, buffers: dict, x: Any, y: Tensor, masks: list[Tensor]) -> Tensor:
        state = _prefixed({**params, **buffers})
        with DropoutMasks(masks):
            if own_loss:
                return functional_call(call, state, (x, y))
            logits = functional_call(call, state, (x,))
        return F.cross_entropy(logits, y)

    return loss


def _first(tree: Any) -> Any:
    """Member 0 of a stacked tree (tensors, dicts, lists), as views."""
    if isinstance(tree, Tensor):
        return tree[0]
    if isinstance(tree, Mapping):
        return {k: _first(v) for k, v in tree.items()}
    return [_first(v) for v in tree]


def _head(tree: Any, k: int) -> Any:
    """The first k rows of a tensor or of every tensor of a dict."""
    if isinstance(tree, Mapping):
        return {key: v[:k] for key, v in tree.items()}
    return tree[:k]


def _channels_last(tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return tree.contiguous(memory_format=torch.channels_last) if tree.dim() == 4 else tree
    if isinstance(tree, Mapping):
        return {k: _channels_last(v) for k, v in tree.items()}
    return tree


def _per_member(
    fn: Callable[..., Tensor], n_members: int, exact: bool, device_type: str
) -> Callable:
    """``fn`` over stacked arguments: `vmap` for several members, a plain call for one
    (image batches then in channels-last layout on the CPU)."""
    if n_members > 1:
        return vmap(fn, randomness="error" if exact else "different")

    def single(params: dict, buffers: dict, x: Any, y: Tensor, masks: list) -> Tensor:
        x = _first(x)
        if device_type == "cpu":
            x = _channels_last(x)
        # squeeze, not [0]: its backward is a reshape, where indexing would write the
        # gradient into a fresh zero tensor at every step
        params = {k: v.squeeze(0) for k, v in params.items()}
        buffers = {k: v.squeeze(0) for k, v in buffers.items()}
        return fn(params, buffers, x, _first(y), _first(masks)).unsqueeze(0)

    return single


# ---------------------------------------------------------------------------- profiling


def _recorded_forward(model: nn.Module, x: Any, y: Tensor) -> tuple[Tensor, DropoutMasks]:
    """Loss of a training-mode forward of ``model`` with its dropout calls recorded."""
    recorder = DropoutMasks()
    with recorder:
        if hasattr(model, "training_loss"):
            return model.training_loss(x, y), recorder
        logits = model(x)
    return F.cross_entropy(logits, y), recorder


def dropout_calls(model: nn.Module, x: Any, y: Tensor) -> list[DropoutCall]:
    """The dropout calls of one training step of ``model`` on (x, y) (a copy runs it)."""
    with torch.no_grad():
        _, recorder = _recorded_forward(copy.deepcopy(model).train(), x, y)
    return recorder.calls


def profile_step(model: nn.Module, x: Any, y: Tensor, n_samples: int | None = None) -> StepProfile:
    """Measure one training step of ``model`` on the batch (x, y) (a copy is trained).

    n_samples : samples of a member's data, for ``member_bytes`` (default the batch).
    """
    probe = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss, recorder = _recorded_forward(probe, x, y)
        loss.backward()
    batch = int(y.shape[0])
    n = batch if n_samples is None else int(n_samples)
    data = _tree_nbytes(x) // max(batch, 1) * n + 8 * n
    weights = sum(p.numel() * p.element_size() for p in probe.parameters())
    kept = sum(b.numel() * b.element_size() for b in probe.buffers())
    return StepProfile(
        batch_size=batch,
        flops=float(counter.get_total_flops()),
        member_bytes=int(data + 4 * weights + kept + 2 * recorder.output_bytes),
        exact=not recorder.uncontrolled,
        uncontrolled=tuple(sorted(set(recorder.uncontrolled))),
    )


def _tree_nbytes(tree: Any) -> int:
    if isinstance(tree, Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, Mapping):
        return sum(_tree_nbytes(v) for v in tree.values())
    return 0


def group_limit(profile: StepProfile, settings: TrainSettings, device: torch.device) -> int:
    """Most members one group stacks: ``settings.folds_per_group`` if given, else the
    rule of the module docstring, capped by the memory budget."""
    if device.type == "cuda":
        limit = CUDA_MAX_GROUP
        budget = torch.cuda.get_device_properties(device).total_memory // 2
    else:
        limit = CPU_MAX_GROUP if profile.flops < CPU_STACKING_MAX_FLOPS else 1
        budget = CPU_MEMORY_BYTES
    if not profile.exact:
        limit = 1
    if settings.folds_per_group is not None:
        limit = settings.folds_per_group
    return max(1, min(limit, budget // max(profile.member_bytes, 1)))


def plan_groups(
    members: Sequence[Member],
    settings: TrainSettings,
    profile: StepProfile,
    device: torch.device,
) -> list[list[int]]:
    """Member indices trained together: at most `group_limit` members with the same
    number of steps per epoch. Deterministic for given members, settings and device."""
    limit = group_limit(profile, settings, device)
    by_steps: dict[int, list[int]] = {}
    for i, member in enumerate(members):
        by_steps.setdefault(steps_per_epoch(member.n, settings.batch_size), []).append(i)
    return [
        indices[i : i + limit]
        for indices in by_steps.values()
        for i in range(0, len(indices), limit)
    ]


# ---------------------------------------------------------------------------- training


def make_optimizer(params: Sequence[Tensor], settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimiser of ``settings`` (adam, adamw or sgd) over ``params``."""
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    raise ConfigError(f"unknown optimizer {settings.optimizer!r}")


def train_models(
    factory: Callable[[], nn.Module],
    members: Sequence[Member],
    settings: TrainSettings,
    device: str | torch.device | None = None,
) -> list[Trained]:
    """Train one model per member; returns them in member order.

    factory : builds a fresh model (called once per member, under the member's seed).
    members : `Member` list (data, labels, seeds, optional validation rows).
    settings : epochs, batch size, optimiser, early stopping (patience), group size.
    device : "auto", "cpu", "cuda" (default ``settings.device``); data and models move
        there once per group.
    Each `Trained` holds the member's model (eval mode; with early stopping its best
    epoch's state) and info: epochs_trained, best_epoch, best_validation_loss,
    folds_in_group, seconds (the group's training time divided among its members).
    """
    if not members:
        return []
    device = resolve_device(settings.device if device is None else device)
    models = []
    for member in members:
        if member.n == 0:
            raise ConfigError("a member has no training sample")
        with seeded_torch(member.seeds[0]):
            models.append(factory())
    if settings.folds_per_group == 1:  # nothing to decide: skip measuring a step
        profile, groups = None, [[i] for i in range(len(members))]
    else:
        first = members[0]
        rows = np.arange(min(first.n, settings.batch_size))
        profile = profile_step(models[0], _rows(first.x, rows), first.y[rows], first.n)
        groups = plan_groups(members, settings, profile, device)
    results: list[Trained | None] = [None] * len(members)
    for group in groups:
        exact = profile is None or profile.exact
        trained = _train_group(
            [models[i] for i in group], [members[i] for i in group], settings, device, exact
        )
        for i, result in zip(group, trained, strict=True):
            results[i] = result
    return results  # type: ignore[return-value]


def _rows(x: Any, rows: np.ndarray) -> Any:
    if isinstance(x, Mapping):
        return {k: _rows(v, rows) for k, v in x.items()}
    return x[torch.as_tensor(rows, device=x.device)]


def _stack_data(xs: Sequence[Any], device: torch.device) -> Any:
    """Members' data (n_f, ...) -> one zero-padded tensor (F, max n_f, ...) on device."""
    if isinstance(xs[0], Mapping):
        return {k: _stack_data([x[k] for x in xs], device) for k in xs[0]}
    longest = max(len(x) for x in xs)
    out = torch.zeros((len(xs), longest, *xs[0].shape[1:]), dtype=xs[0].dtype, device=device)
    for f, x in enumerate(xs):
        out[f, : len(x)] = x.to(device)
    return out


def _gather(stacked: Any, members: Tensor, idx: Tensor) -> Any:
    """Rows idx (F', b) of members (F',) of stacked data -> (F', b, ...)."""
    if isinstance(stacked, Mapping):
        return {k: _gather(v, members, idx) for k, v in stacked.items()}
    return stacked[members[:, None], idx]


def _to_device(tree: Any, device: torch.device) -> Any:
    if tree is None:
        return None
    if isinstance(tree, Mapping):
        return {k: v.to(device) for k, v in tree.items()}
    return tree.to(device)


def _train_group(
    models: list[nn.Module],
    members: list[Member],
    settings: TrainSettings,
    device: torch.device,
    exact: bool,
) -> list[Trained]:
    """Train the members of one group as one stacked model (see the module docstring)."""
    started = time.perf_counter()
    with seeded_torch(members[0].seeds[2], [device]):  # only for uncontrolled randomness
        group = _StackedGroup(models, members, settings, device, exact)
        orders = [
            batch_order(m.seeds[1], m.n, settings.batch_size, settings.epochs) for m in members
        ]
        early = (
            _EarlyStopping(members, settings.patience, device) if settings.early_stopping else None
        )
        epochs_run = np.zeros(len(members), dtype=int)
        for epoch in range(settings.epochs):
            epoch_batches = [next(order) for order in orders]
            if early is not None and early.stopped.all():
                break
            group.skeleton.train()
            for step in range(len(epoch_batches[0])):
                group.step([b[step] for b in epoch_batches])
            epochs_run[~early.stopped if early is not None else slice(None)] = epoch + 1
            if early is not None:
                early.update(group.skeleton, group.params, group.buffers, epoch)
        seconds = (time.perf_counter() - started) / len(members)
        trained = []
        for f in range(len(members)):
            model = group.models[f]  # built by the factory; its own tensors were copied
            state = {k: v[f] for k, v in (group.params | group.buffers).items()}
            if early is not None and early.best_state[f] is not None:
                state = early.best_state[f]
            _load(model, state)
            info: dict[str, Any] = {
                "epochs_trained": int(epochs_run[f]),
                "best_epoch": int(early.best_epoch[f] if early is not None else epochs_run[f]),
                "folds_in_group": len(members),
                "seconds": seconds,
                "device": str(device),
            }
            if early is not None and np.isfinite(early.best_loss[f]):
                info["best_validation_loss"] = float(early.best_loss[f])
            trained.append(Trained(model.eval(), info))
    return trained


class _StackedGroup:
    """The stacked parameters, buffers, optimiser, data and dropout generators of a group."""

    def __init__(
        self,
        models: list[nn.Module],
        members: list[Member],
        settings: TrainSettings,
        device: torch.device,
        exact: bool,
    ) -> None:
        self.models = models = [m.to(device) for m in models]
        self.members, self.device = members, device
        self.skeleton = copy.deepcopy(models[0])
        self.params, self.buffers = stack_module_state(models)
        self.optimizer = make_optimizer(list(self.params.values()), settings)
        self.x = _stack_data([m.x for m in members], device)
        self.y = _stack_data([m.y for m in members], device)
        n = len(members)
        self.loss = _per_member(_loss_function(self.skeleton), n, exact, device.type)
        self.constrain = _constraint(self.skeleton, n)
        self.generators = [torch.Generator(device=device).manual_seed(m.seeds[2]) for m in members]
        self.calls: dict[int, list[DropoutCall]] = {}  # dropout calls per batch size
        self.per_row: list[DropoutCall] | None = None  # calls of a 2-row batch, if they scale
        self.everyone = torch.arange(n, device=device)

    def step(self, batch_rows: list[np.ndarray]) -> None:
        """One optimiser step; member f trains on its rows ``batch_rows[f]``. Members
        whose batches differ in size (the last batch of an epoch) run in separate
        `vmap` calls, and their gradients meet in the stacked parameters."""
        sizes = np.array([len(rows) for rows in batch_rows])
        total = torch.zeros((), device=self.device)
        for size in np.unique(sizes):
            chosen = np.flatnonzero(sizes == size)
            total = total + self._losses(chosen, [batch_rows[f] for f in chosen]).sum()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        if self.constrain is not None:
            self.constrain(self.params)

    def _dropout_calls(self, x: Any, y: Tensor) -> list[DropoutCall]:
        """The dropout calls of a forward on the batch (x, y). Recorded once on two and on
        three rows: when every call's first axis is the batch, any batch size follows;
        otherwise each batch size is recorded on a batch of its own."""
        size = int(y.shape[0])
        if size in self.calls:
            return self.calls[size]
        if self.per_row is None:
            self.per_row = []
            try:
                probes = [self._record(_head(x, k), y[:k]) for k in (2, 3)] if size >= 3 else []
            except (RuntimeError, ValueError):  # the model cannot run on so few rows
                probes = []
            if probes:
                follows = all(
                    len(a.shape) == len(b.shape)
                    and a.shape[0] == 2
                    and b.shape[0] == 3
                    and a.shape[1:] == b.shape[1:]
                    and (a.kind, a.p) == (b.kind, b.p)
                    for a, b in zip(*probes, strict=True)
                ) and len(probes[0]) == len(probes[1])
                self.per_row = probes[0] if follows else []
        if self.per_row:
            calls = [DropoutCall(c.kind, (size, *c.shape[1:]), c.p) for c in self.per_row]
        else:
            calls = self._record(x, y)
        self.calls[size] = calls
        return calls

    def _record(self, x: Any, y: Tensor) -> list[DropoutCall]:
        with torch.no_grad():  # the skeleton's own tensors are scratch: no copy needed
            _, recorder = _recorded_forward(self.skeleton.train(), x, y)
        return recorder.calls

    def _losses(self, chosen: np.ndarray, rows: list[np.ndarray]) -> Tensor:
        idx = torch.as_tensor(np.stack(rows), device=self.device)
        if len(chosen) == len(self.members):
            sel, params, buffers = self.everyone, self.params, self.buffers
        else:  # a subset: gather its slices (gradients flow back), write its buffers back
            sel = torch.as_tensor(chosen, device=self.device)
            params = {k: v[sel] for k, v in self.params.items()}
            buffers = {k: v[sel] for k, v in self.buffers.items()}
        x, y = _gather(self.x, sel, idx), _gather(self.y, sel, idx)
        calls = self._dropout_calls(_first(x), _first(y))
        draws = [draw_masks(calls, self.generators[f], self.device) for f in chosen]
        masks = [torch.stack(parts) for parts in zip(*draws, strict=True)]
        losses = self.loss(params, buffers, x, y, masks)
        if buffers is not self.buffers:
            with torch.no_grad():
                for k, v in buffers.items():
                    self.buffers[k][sel] = v
        return losses


@torch.no_grad()
def _load(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        tensor.copy_(state[name])


def _constraint(skeleton: nn.Module, n_members: int) -> Callable[[dict], None] | None:
    """The model's ``apply_constraints`` (e.g. EEGNet's max-norm) on every member, in place."""
    if not hasattr(skeleton, "apply_constraints"):
        return None
    call = _Method(skeleton, "apply_constraints")

    def one(params: dict) -> dict:
        functional_call(call, _prefixed(params), ())
        return params

    batched = vmap(one) if n_members > 1 else lambda params: one(_first(params))

    @torch.no_grad()
    def apply(params: dict) -> None:
        batched(params)

    return apply


@torch.no_grad()
def predict_proba(model: nn.Module, x: Any, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities (n, n_classes), float64, of an eval-mode model on x (n, ...)."""
    model.eval()
    n = int(next(iter(x.values())).shape[0]) if isinstance(x, Mapping) else int(x.shape[0])
    out = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(n, start + batch_size))
        out.append(torch.softmax(model(_rows(x, rows)), dim=1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


class _EarlyStopping:
    """Per member: validation loss after every epoch, best epoch and state, patience."""

    def __init__(self, members: Sequence[Member], patience: int, device: torch.device) -> None:
        self.x = [_to_device(m.x_val, device) for m in members]
        self.y = [None if m.y_val is None else m.y_val.cpu().numpy() for m in members]
        self.patience = patience
        n = len(members)
        self.has_validation = np.array([y is not None and len(y) > 0 for y in self.y])
        self.stopped = np.zeros(n, dtype=bool)  # members without validation rows never stop
        self.best_loss = np.full(n, np.inf)
        self.best_epoch = np.zeros(n, dtype=int)
        self.best_state: list[dict[str, Tensor] | None] = [None] * n

    def update(self, skeleton: nn.Module, params: dict, buffers: dict, epoch: int) -> None:
        state = {**params, **buffers}
        for f in np.flatnonzero(~self.stopped & self.has_validation):
            member_state = {k: v[f] for k, v in state.items()}
            proba = _functional_proba(skeleton, member_state, self.x[f])
            y = self.y[f]
            loss = float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).mean())
            if loss < self.best_loss[f] - 1e-9:
                self.best_loss[f], self.best_epoch[f] = loss, epoch + 1
                self.best_state[f] = {k: v.detach().clone() for k, v in member_state.items()}
            elif epoch + 1 - self.best_epoch[f] >= self.patience:
                self.stopped[f] = True
        skeleton.train()


@torch.no_grad()
def _functional_proba(skeleton: nn.Module, state: dict[str, Tensor], x: Any) -> np.ndarray:
    skeleton.eval()
    n = int(next(iter(x.values())).shape[0]) if isinstance(x, Mapping) else int(x.shape[0])
    out = []
    for start in range(0, n, 1024):
        rows = np.arange(start, min(n, start + 1024))
        logits = functional_call(skeleton, state, (_rows(x, rows),))
        out.append(torch.softmax(logits, dim=1).double().cpu().numpy())
    return np.concatenate(out)
