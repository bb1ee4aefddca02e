"""Which members train together, and in which batches.

`batch_order` gives a member's batches (a plain shuffled loop over its own samples);
`plan_groups` splits members into groups that train as one stacked model
(`mmhe.evaluation.engine`), using `profile_step`, one measured training step.

Group size
    On a GPU members are stacked up to ``CUDA_MAX_GROUP`` (and the memory budget): a
    small model fills a GPU only that way. On the CPU stacking pays when framework
    overhead per operation dominates (small layers, small batches) and costs when the
    operations are large: `vmap` turns a convolution of F models into a grouped
    convolution, which oneDNN runs 2-3x slower per model than F separate ones, and
    BatchNorm and pooling of stacked members into extra copies. Measured with 8 members
    per group against one (``benchmarks/bench_training.py``, last section, per
    CPU-second): PhysioMLP 2.6-3.3x (1.3 MFLOP per step), early fusion 0.7-0.8x
    (165 MFLOP), EEG-TCN 1.0x (2 GFLOP), STSTNet 0.2x (350 MFLOP). The engine therefore
    stacks on the CPU only models whose training step costs less than
    ``CPU_STACKING_MAX_FLOPS`` per batch (`torch.utils.flop_counter`). A fixed memory budget
    (``CPU_MEMORY_BYTES``; a CUDA device's half) caps the group, so the grouping, and
    hence every number, is the same on every run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mmhe.evaluation.dropout import recorded_loss
from mmhe.evaluation.settings import TrainSettings

if TYPE_CHECKING:
    from mmhe.evaluation.engine import Member

CPU_STACKING_MAX_FLOPS = 10e6
"""Largest training-step cost (FLOPs per batch, forward + backward) stacked on the CPU."""
CPU_MAX_GROUP = 8
CUDA_MAX_GROUP = 64
CPU_MEMORY_BYTES = 2 * 2**30
"""Memory budget of one group on the CPU (data, parameters, optimiser state, activations)."""


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


def profile_step(model: nn.Module, x: Any, y: Tensor, n_samples: int | None = None) -> StepProfile:
    """Measure one training step of ``model`` on the batch (x, y) (a copy is trained).

    n_samples : samples of a member's data, for ``member_bytes`` (default the batch).
    """
    probe = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss, recorder = recorded_loss(probe, x, y)
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
