"""Training settings of one run, the seeds of every fold, and the device to train on.

>>> settings = resolve_settings("ststnet", epochs=20)      # the paper's lr and batch size
>>> settings.lr, settings.batch_size, settings.epochs
(5e-05, 256, 20)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.utils.deterministic

from mmhe.errors import ConfigError
from mmhe.evaluation.device import resolve_device
from mmhe.models import TrainingDefaults, model_spec

ENGINES = ("auto", "stacked", "sequential", "fused")
THREADS_PER_PROCESS = 1
"""Torch intra-op threads while training (in this process or per single-threaded Dask
worker): the registry's networks are small, and with more threads than one the workers
mostly wait at OpenMP barriers (``benchmarks/bench_training.py`` row "plain loop,
2 threads"); the cores are used by training folds side by side instead."""


@dataclass(frozen=True)
class TrainSettings:
    """Resolved training settings of one run (model defaults overridden by arguments).

    device : the torch device models train on, resolved ("cpu", "cuda", "cuda:N";
        `mmhe.evaluation.device.resolve_device`); inputs stay on the CPU until a group
        of folds moves them there once.
    folds_per_group : folds trained together as one stacked model
        (`mmhe.evaluation.engine`); None lets the engine decide (see `plan_groups`).
    engine : "stacked" (`mmhe.evaluation.engine`, every torch model, folds stacked as
        `plan_groups` decides), "sequential" (the same engine, one fold at a time) or
        "fused" (the hand-written STSTNet trainer of `mmhe.evaluation.fused_ststnet`,
        CPU only); `resolve_settings` turns "auto" into one of them.
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    seed: int = 0
    early_stopping: bool = False
    val_fraction: float = 0.2
    patience: int = 20
    normalize: bool = True
    model_kw: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # epochs/batch_size/lr given
    device: str = "cpu"
    folds_per_group: int | None = None
    engine: str = "stacked"


def resolve_settings(
    model_name: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    early_stopping: bool = False,
    val_fraction: float = 0.2,
    patience: int = 20,
    normalize: bool = True,
    model_kw: Mapping[str, Any] | None = None,
    device: str | torch.device | None = "cpu",
    folds_per_group: int | None = None,
    engine: str = "auto",
) -> TrainSettings:
    """The model's published defaults (`ModelSpec.defaults`) with the given overrides.

    device : "auto" (CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N"; resolved
        here, so a missing GPU fails before any work.
    engine : "auto" is "stacked" on the CPU and "sequential" on a GPU (the stacked
        engine has not been measured on one; ask for it with engine="stacked"), or
        "stacked", "sequential", "fused" (STSTNet on the CPU only).
    """
    d: TrainingDefaults = model_spec(model_name).defaults
    where = resolve_device(device)  # unknown or missing: fails here
    engine = str(engine)
    if engine == "auto":
        engine = "stacked" if where.type == "cpu" else "sequential"
    settings = TrainSettings(
        epochs=d.epochs if epochs is None else int(epochs),
        batch_size=d.batch_size if batch_size is None else int(batch_size),
        lr=d.lr if lr is None else float(lr),
        optimizer=d.optimizer,
        momentum=d.momentum,
        weight_decay=d.weight_decay,
        seed=int(seed),
        early_stopping=bool(early_stopping),
        val_fraction=float(val_fraction),
        patience=int(patience),
        normalize=bool(normalize),
        model_kw=dict(model_kw or {}),
        overrides={
            key: value
            for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr))
            if value is not None
        },
        device=str(where),
        folds_per_group=None if folds_per_group is None else int(folds_per_group),
        engine=engine,
    )
    if settings.epochs < 1 or settings.batch_size < 1 or settings.lr <= 0:
        raise ConfigError(
            f"need epochs >= 1, batch_size >= 1 and lr > 0, got {settings.epochs}, "
            f"{settings.batch_size}, {settings.lr}"
        )
    if settings.folds_per_group is not None and settings.folds_per_group < 1:
        raise ConfigError(f"folds_per_group must be >= 1, got {settings.folds_per_group}")
    if settings.engine not in ENGINES:
        raise ConfigError(f"unknown engine {settings.engine!r}; use {', '.join(ENGINES)}")
    if settings.engine == "fused" and (model_name != "ststnet" or where.type != "cpu"):
        raise ConfigError(
            f"engine='fused' trains STSTNet on the CPU only (got {model_name!r} on "
            f"{where}); use engine='stacked' or 'sequential'"
        )
    return settings


def fold_seeds(seed: int, fold_index: int) -> tuple[int, int, int, int]:
    """(torch init seed, batch-order seed, dropout seed, validation-split seed) of a fold."""
    state = np.random.SeedSequence([int(seed), int(fold_index)]).generate_state(4, np.uint32)
    return tuple(int(s) for s in state)  # type: ignore[return-value]


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[None]:
    """Set torch's intra-op threads for a block: ``threads``, else the calling Dask
    worker's thread count, else `THREADS_PER_PROCESS`; restore after."""
    if threads is None:
        threads = THREADS_PER_PROCESS
        try:
            from distributed import get_worker

            threads = int(get_worker().state.nthreads)
        except (ImportError, ValueError):
            pass
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms`, without its import of ``torch._inductor``
    (1.2-1.3 s, once per process: every benchmark worker paid it) while nothing has
    imported it: the setting it copies there only matters to code torch compiles."""
    if "torch._inductor.config" in sys.modules or not hasattr(
        torch._C, "_set_deterministic_algorithms"
    ):
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


@contextmanager
def seeded_torch(seed: int, devices: Iterable[torch.device] = ()) -> Iterator[None]:
    """Fork torch's RNG (CPU and the given CUDA devices), seed it, switch deterministic
    algorithms on; restore everything after.

    The NaN-filling of fresh tensors that deterministic mode adds by default is switched
    off: it only helps to find reads of uninitialised memory and costs a full extra pass
    over every allocation (15x slower training of small networks).
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    cuda = [torch.device(d).index or 0 for d in devices if torch.device(d).type == "cuda"]
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)  # seeds CPU and every CUDA device
        _deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        try:
            yield
        finally:
            _deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = was_filling
