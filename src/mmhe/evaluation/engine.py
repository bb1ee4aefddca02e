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
    and one `torch.optim` optimiser updates the stacked tensors. A group of one trains
    its module in place, as a plain loop would (`_OneMember`).

Why a member's result does not depend on its group (tested, to float tolerance)
    - its model is built by ``factory()`` under its own seed (`fold_seeds`);
    - its batches are those of a plain shuffled loop over its own samples
      (`mmhe.evaluation.planning.batch_order`);
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

Group size and batches: `mmhe.evaluation.planning`. Image batches (N, C, H, W) of a
group of one are fed in channels-last layout on the CPU, where oneDNN's convolution,
BatchNorm and pooling of STSTNet run fastest.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from mmhe.errors import ConfigError
from mmhe.evaluation.device import resolve_device, to_device
from mmhe.evaluation.dropout import DropoutCall, DropoutMasks, draw_masks, recorded_loss
from mmhe.evaluation.planning import batch_order, plan_groups, profile_step
from mmhe.evaluation.settings import TrainSettings, seeded_torch


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

    @property
    def n_val(self) -> int:
        return 0 if self.y_val is None else int(self.y_val.shape[0])


@dataclass
class Trained:
    """A trained member: the module (eval mode, on the training device) and facts."""

    model: nn.Module
    info: dict[str, Any]


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


def _per_member(fn: Callable[..., Tensor], exact: bool) -> Callable:
    """``fn`` over stacked arguments (members on the leading axis), with `vmap`."""
    return vmap(fn, randomness="error" if exact else "different")


# ---------------------------------------------------------------------------- training


def _fused_ok(params: Sequence[Tensor]) -> bool | None:
    """True when torch's fused Adam kernel supports every tensor of ``params``."""
    ok = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok and params else None


def make_optimizer(params: Sequence[Tensor], settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimiser of ``settings`` (adam, adamw or sgd) over ``params``.

    Adam and AdamW use torch's fused kernel (one pass over every tensor) when all
    parameters are floating-point on CPU or CUDA: the same update to float rounding, and
    3.0-3.4 -> 0.6-1.0 ms per step on the stacked STSTNet and TCN parameters here.
    """
    fused = _fused_ok(params)
    if settings.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused
        )
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused
        )
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

    factory : builds a fresh model (called once per member, under the member's seed;
        lazy modules such as `torch.nn.LazyLinear` are initialised there by one forward
        pass on two of the member's rows, see `build_member_model`).
    members : `Member` list (data, labels, seeds, optional validation rows).
    settings : epochs, batch size, optimiser, early stopping (patience), group size.
    device : "auto", "cpu", "cuda" (default ``settings.device``); data and models move
        there once per group.
    Each `Trained` holds the member's model (eval mode; with early stopping its best
    epoch's state) and info: epochs_trained, best_epoch, best_validation_loss,
    n_validation_used, folds_in_group, seconds (the group's training time divided
    among its members), device.
    """
    if not members:
        return []
    device = resolve_device(settings.device if device is None else device)
    models = []
    for member in members:
        if member.n == 0:
            raise ConfigError("a member has no training sample")
        models.append(build_member_model(factory, member, device))
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


def build_member_model(
    factory: Callable[[], nn.Module], member: Member, device: torch.device | None = None
) -> nn.Module:
    """``factory()`` under the member's initialisation seed (CPU and ``device``'s RNG
    forked). A model with lazy modules (e.g. `torch.nn.LazyLinear` in a registered
    model) then runs one forward pass without gradients on two of the member's rows, so
    its parameters exist (drawn under the same seed) before they are stacked."""
    from torch.nn.modules.lazy import LazyModuleMixin

    devices = [] if device is None else [device]
    with seeded_torch(member.seeds[0], devices):
        model = factory()
        if any(isinstance(m, LazyModuleMixin) for m in model.modules()):
            head = _rows(member.x, np.arange(min(2, member.n)))
            head = (
                {k: v.cpu() for k, v in head.items()} if isinstance(head, Mapping) else head.cpu()
            )
            with torch.no_grad():
                model.eval()(head)
            model.train()
    return model


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
        kind = _OneMember if len(members) == 1 else _StackedGroup
        group = kind(models, members, settings, device, exact)
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
                "n_validation_used": members[f].n_val,
                "folds_in_group": len(members),
                "seconds": seconds,
                "device": str(device),
            }
            if early is not None and np.isfinite(early.best_loss[f]):
                info["best_validation_loss"] = float(early.best_loss[f])
            trained.append(Trained(model.eval(), info))
    return trained


class _Group:
    """What every group has: its models, a scratch copy for recording dropout calls, and
    the dropout calls per batch size."""

    def __init__(self, models: list[nn.Module], members: list[Member], device: torch.device):
        self.models = models = [m.to(device) for m in models]
        self.members, self.device = members, device
        self.skeleton = copy.deepcopy(models[0])
        self.calls: dict[int, list[DropoutCall]] = {}  # dropout calls per batch size
        self.per_row: list[DropoutCall] | None = None  # calls of a 2-row batch, if they scale

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
            _, recorder = recorded_loss(self.skeleton.train(), x, y)
        return recorder.calls


class _StackedGroup(_Group):
    """The stacked parameters, buffers, optimiser, data and dropout generators of a group
    of several members."""

    def __init__(
        self,
        models: list[nn.Module],
        members: list[Member],
        settings: TrainSettings,
        device: torch.device,
        exact: bool,
    ) -> None:
        super().__init__(models, members, device)
        self.params, self.buffers = stack_module_state(self.models)
        self.optimizer = make_optimizer(list(self.params.values()), settings)
        self.x = _stack_data([m.x for m in members], device)
        self.y = _stack_data([m.y for m in members], device)
        n = len(members)
        self.loss = _per_member(_loss_function(self.skeleton), exact)
        self.constrain = _constraint(self.skeleton)
        self.generators = [torch.Generator(device=device).manual_seed(m.seeds[2]) for m in members]
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


class _OneMember(_Group):
    """A group of one: the member's own module trains in place, as in a plain loop
    (no stacking, no `functional_call`), with the same batches, dropout masks and
    optimiser as a stacked member, so the same result (tested). On the CPU image
    batches (N, C, H, W) are fed channels-last. ``params`` and ``buffers`` are views of
    the module's tensors with a leading member axis of 1, for early stopping.

    Why not a stacked group of one: `functional_call` and the squeezing of stacked
    tensors made a STSTNet step at batch 32 take 6.1-9.1 ms against 4.1-6.8 ms for
    the module trained in place (3 alternated pairs in one process, one thread).
    """

    def __init__(
        self,
        models: list[nn.Module],
        members: list[Member],
        settings: TrainSettings,
        device: torch.device,
        exact: bool,
    ) -> None:
        super().__init__(models, members, device)
        self.model, member = self.models[0], members[0]
        self.optimizer = make_optimizer(list(self.model.parameters()), settings)
        self.x, self.y = to_device(member.x, device), member.y.to(device)
        self.generator = torch.Generator(device=device).manual_seed(member.seeds[2])
        self.constrain = getattr(self.model, "apply_constraints", None)
        self.channels_last = device.type == "cpu"

    @property
    def params(self) -> dict[str, Tensor]:
        return {k: v.detach().unsqueeze(0) for k, v in self.model.named_parameters()}

    @property
    def buffers(self) -> dict[str, Tensor]:
        return {k: v.detach().unsqueeze(0) for k, v in self.model.named_buffers()}

    def step(self, batch_rows: list[np.ndarray]) -> None:
        """One optimiser step on the rows ``batch_rows[0]``."""
        x, y = _rows(self.x, batch_rows[0]), _rows(self.y, batch_rows[0])
        if self.channels_last:
            x = _channels_last(x)
        masks = draw_masks(self._dropout_calls(x, y), self.generator, self.device)
        loss, _ = recorded_loss(self.model, x, y, masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.constrain is not None:
            with torch.no_grad():
                self.constrain()


@torch.no_grad()
def _load(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        tensor.copy_(state[name])


def _constraint(skeleton: nn.Module) -> Callable[[dict], None] | None:
    """The model's ``apply_constraints`` (e.g. EEGNet's max-norm) on every stacked member,
    in place."""
    if not hasattr(skeleton, "apply_constraints"):
        return None
    call = _Method(skeleton, "apply_constraints")

    def one(params: dict) -> dict:
        functional_call(call, _prefixed(params), ())
        return params

    batched = vmap(one)

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
        self.x = [None if m.x_val is None else to_device(m.x_val, device) for m in members]
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
