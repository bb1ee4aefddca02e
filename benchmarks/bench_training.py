"""Training throughput: plain PyTorch loops vs mmhe's engine, side by side, and the limit.

A synthetic set shaped like MMHE (275 participants, 1,536 MEs, 3 x 28 x 28 flow images,
3 classes, planted class signal) is evaluated leave-one-subject-out on a random subset
of the folds (the full 275-fold protocol takes hours; throughput is per sample-step, so
the subset measures it and the full protocol is extrapolated). For STSTNet and one more
visual model (``--models``), in one run:

A. plain loop, one thread, in this process: the textbook code a user writes around
   ``build_model(name)``: per-fold z-scoring, `DataLoader(shuffle=True)`, the model's
   optimiser, batch and loss; ``--seeds`` seeds (their spread is the accuracy reference);
A3. (STSTNet) the same loop on the paper's layout of three separate streams
   (`TripleStreamSTSTNet` below, checked equal to `STSTNet`): the network before this
   change, whose plain loop the earlier figures refer to;
D. (STSTNet) the loop of A with two torch threads (torch's default on two cores);
B. the loop of A, one fold per task, on the Dask workers (``--workers`` single-threaded
   processes of `mmhe.parallel.local_cluster`): plain code using every core;
C. `mmhe.evaluation.run_folds(name, ..., client=...)` (the engine) on the same workers,
   ``--seeds`` seeds;
C1. the engine in this process, one thread (`mmhe benchmark`'s default scheduler,
   ``sync``): the same process and thread as A, so C1 / A is the engine's own gain,
   free of the two workers' contention for the shared caches;
F. (STSTNet) ``run_folds(..., engine="fused")``, the hand-written STSTNet trainer
   (`mmhe.evaluation.fused_ststnet`), on the same workers; F1: in this process;
M. (STSTNet, a quarter of the folds) B, C and F on a cluster with Dask's own worker
   memory settings and on one with `mmhe.parallel.WORKER_ENVIRON` (the figures behind
   that setting).

Then, in this process, the engine's fold stacking: members trained one per group
against eight per group (`torch.func.vmap`), per CPU-second, for a few registry models
on random inputs of their documented shapes (the figures behind
`mmhe.evaluation.planning.CPU_STACKING_MAX_FLOPS`). Last, the anatomy of one training
step of each model (`step_anatomy`): the plain loop's step, the engine's, and the module's
own forward and backward alone, whose ratio to the plain step bounds what any trainer
of the same `nn.Module` can gain.

Throughput = sum over folds of (training samples x epochs) / wall seconds; CPU seconds
are of every process involved (this one and the workers). On a machine shared with other
jobs wall time follows their load; sample-steps per CPU-second much less, and ratios of
rows measured in the same run less still. The load average is printed with each row.
FLOPs per sample-step: forward + backward of one batch (`torch.utils.flop_counter`);
the limit: single-thread float32 matmul (2048 x 2048) in this process and on every
worker at once. Projected full protocol: all 275 folds x the model's published epochs at
C's wall rate (and at its CPU rate on idle cores); and from C (or F) beside the same run
with a third of the epochs (rows Cs, Fs), split into a cost per sample-step and a cost per
fold, so that a fold's set-up is not counted once per epoch (`projection`).

Run (one complete table; 10-20 min on two shared cores):

    .venv/bin/python benchmarks/bench_training.py
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from distributed import Client
from scipy.stats import mannwhitneyu, ttest_ind
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmhe.evaluation import (
    Member,
    fold_seeds,
    loso,
    pooled_scores,
    resolve_settings,
    run_folds,
    train_models,
)
from mmhe.evaluation.dropout import recorded_loss
from mmhe.evaluation.engine import _OneMember
from mmhe.evaluation.planning import profile_step
from mmhe.models import STSTNet, build_model, model_spec
from mmhe.parallel import local_cluster, tune_allocator

LOSO_FOLDS = 275


class TripleStreamSTSTNet(nn.Module):
    """STSTNet as the paper draws it: three streams of 3, 5 and 8 filters, each
    conv -> ReLU -> BatchNorm -> max-pool -> dropout, concatenated, then 2 x 2 average
    pool and linear. `from_ststnet` copies an `STSTNet`'s weights (same function)."""

    def __init__(self, n_classes: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.streams = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(3, width, 3, padding=1),
                    relu=nn.ReLU(),
                    bn=nn.BatchNorm2d(width),
                    pool=nn.MaxPool2d(3, stride=3, padding=1),
                    drop=nn.Dropout(dropout),
                )
            )
            for width in STSTNet.stream_channels
        )
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(400, n_classes)

    @classmethod
    def from_ststnet(cls, model: STSTNet) -> TripleStreamSTSTNet:
        out = cls(model.n_classes, model.dropout)
        with torch.no_grad():
            for stream, part in zip(out.streams, STSTNet.stream_slices(), strict=True):
                for name in ("conv", "bn"):
                    for key, value in getattr(model.streams, name).state_dict().items():
                        target = getattr(stream, name).state_dict()[key]
                        target.copy_(value if value.dim() == 0 else value[part])
            out.classifier.load_state_dict(model.classifier.state_dict())
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([stream(x) for stream in self.streams], dim=1)
        return self.classifier(self.pool(features).flatten(1))


def synthetic_mmhe(
    seed: int = 0, n_people: int = 275, n_samples: int = 1536, amplitude: float = 0.4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X (N, 3, 28, 28) float32, y (N,), participants (N,)) with a planted class signal:
    a class-specific motion blob in the u/v flow channels, per-participant offsets and
    gains, Gaussian noise."""
    rng = np.random.default_rng(seed)
    counts = 1 + rng.multinomial(n_samples - n_people, rng.dirichlet(np.full(n_people, 2.0)))
    groups = np.repeat(np.arange(n_people), counts)
    y = rng.choice(3, size=n_samples, p=[0.55, 0.27, 0.18])
    yy, xx = np.mgrid[0:28, 0:28]
    centres = [(9, 9), (9, 19), (19, 14)]
    templates = np.stack(
        [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2)) for cy, cx in centres]
    )
    gain = rng.uniform(0.5, 1.5, n_people)[groups]
    X = rng.normal(size=(n_samples, 3, 28, 28))
    X += rng.normal(scale=0.5, size=(n_people, 3, 1, 1))[groups]
    X[:, 1] += amplitude * 2.5 * gain[:, None, None] * templates[y]
    X[:, 2] -= amplitude * 2.5 * gain[:, None, None] * templates[(y + 1) % 3]
    X[:, 0] = np.hypot(X[:, 1], X[:, 2]) * 0.5 + rng.normal(scale=0.5, size=(n_samples, 28, 28))
    return X.astype(np.float32), y, groups


def _textbook_model(name: str, seed: int, layout: str) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, n_classes=3)
    return TripleStreamSTSTNet.from_ststnet(model) if layout == "three streams" else model


def plain_loso(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list,
    epochs: int,
    lr: float | None,
    seed: int,
    threads: int | None = None,
    layout: str = "mmhe",
) -> pd.DataFrame:
    """The plain PyTorch loop, one fold after another."""
    if threads:
        torch.set_num_threads(threads)
    defaults = model_spec(name).defaults
    rows = []
    for fold in folds:
        x_train, x_test = X[fold.train_idx], X[fold.test_idx]
        mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
        std = x_train.std(axis=(0, 2, 3), keepdims=True)
        x_train = torch.from_numpy((x_train - mean) / std)
        x_test = torch.from_numpy((x_test - mean) / std)
        model = _textbook_model(name, seed * 100_003 + fold.index, layout)
        rate = defaults.lr if lr is None else lr
        if defaults.optimizer == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=rate, momentum=defaults.momentum)
        else:
            optimizer = torch.optim.Adam(
                model.parameters(), lr=rate, weight_decay=defaults.weight_decay
            )
        loader = DataLoader(
            TensorDataset(x_train, torch.from_numpy(y[fold.train_idx])),
            batch_size=defaults.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed * 100_003 + fold.index),
        )
        model.train()
        for _ in range(epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                if hasattr(model, "training_loss"):
                    loss = model.training_loss(xb, yb)
                else:
                    loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model(x_test).argmax(1).numpy()
        rows.append(
            pd.DataFrame(
                {
                    "participant": groups[fold.test_idx],
                    "sample": fold.test_idx,
                    "y_true": y[fold.test_idx],
                    "y_pred": pred,
                    "fold": fold.index,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Best single-thread float32 matmul rate of this process, GFLOP per CPU-second
    (CPU time, so that other jobs on the machine do not lower the limit)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = np.inf
    for _ in range(repeats):
        started = time.process_time()
        a @ b
        best = min(best, time.process_time() - started)
    torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def warm_up(names: list[str]) -> None:
    """Train every way once on a few samples (imports, kernel selection, allocator)."""
    torch.set_num_threads(1)
    X, y, groups = synthetic_mmhe(1, n_people=4, n_samples=64)
    folds = list(loso(groups))[:2]
    for name in names:
        plain_loso(name, X, y, groups, folds, 1, None, 0)
        run_folds(name, X, y, groups, folds, epochs=1, device="cpu")
    plain_loso("ststnet", X, y, groups, folds, 1, None, 0, layout="three streams")


def flops_per_sample(name: str, batch_size: int) -> float:
    """Forward + backward FLOPs of one training sample of ``name`` (3 x 28 x 28 input)."""
    model = build_model(name, n_classes=3)
    x = torch.randn(batch_size, 3, 28, 28)
    return profile_step(model, x, torch.randint(0, 3, (batch_size,))).flops / batch_size


class Bench:
    """Runs and records the rows of the table."""

    def __init__(self, client: Client, data: tuple, workers: int) -> None:
        self.client, self.data, self.workers = client, data, workers
        self.rows: list[dict] = []
        self.folds: dict[str, int] = {}  # folds of each model's runs

    def cpu_now(self, on: Client | None) -> float:
        """CPU seconds of this process and, with ``on``, of that cluster's workers."""
        own = time.process_time()
        return own if on is None else own + sum(on.run(time.process_time).values())

    def measure(
        self, model: str, run: str, seed: int, work: int, fn: Callable, on: Client | None = None
    ) -> None:
        wall, cpu = time.perf_counter(), self.cpu_now(on)
        table = fn()
        wall, cpu = time.perf_counter() - wall, self.cpu_now(on) - cpu
        load = os.getloadavg()[0]
        scores = pooled_scores(table.y_true, table.y_pred, [0, 1, 2])
        self.rows.append(
            {"model": model, "run": run, "seed": seed, "wall_s": wall, "cpu_s": cpu}
            | {"work": work, "load": load}
            | {k: scores[k] for k in ("accuracy", "uf1", "uar")}
        )
        print(
            f"  {model:10s} {run:48s} seed {seed}  {wall:7.1f} s  {work / wall:7.0f} "
            f"sample-steps/s  ({work / cpu:6.0f} per CPU-s)  load {load:.1f}",
            flush=True,
        )

    def model(self, name: str, folds: list, epochs: int, lr: float | None, seeds: int) -> None:
        """Every row of one model."""
        X, y, groups = self.data
        client, main_model = self.client, name == "ststnet"
        work = sum(f.train_idx.size for f in folds) * epochs
        self.folds[name] = len(folds)
        plain = partial(plain_loso, name, X, y, groups, folds, epochs, lr)
        for seed in range(seeds):
            self.measure(name, "A plain loop, 1 thread", seed, work, partial(plain, seed))
        if main_model:
            three = partial(plain, 0, layout="three streams")
            self.measure(name, "A3 plain loop, paper's three streams", 0, work, three)
            torch.set_num_threads(2)
            self.measure(name, "D plain loop, 2 threads", 0, work, partial(plain, 0))
            torch.set_num_threads(1)
        remote = client.scatter([X, y, groups], broadcast=True, hash=False)

        def plain_on_workers() -> pd.DataFrame:
            futures = [
                client.submit(plain_loso, name, *remote, [f], epochs, lr, 0, 1, pure=False)
                for f in folds
            ]
            return pd.concat(client.gather(futures), ignore_index=True)

        self.measure(
            name, f"B plain loop, {self.workers} workers", 0, work, plain_on_workers, client
        )
        engine = partial(run_folds, name, X, y, groups, epochs=epochs, lr=lr, device="cpu")
        for seed in range(seeds):
            run = partial(engine, folds, seed=seed, client=client)
            self.measure(name, f"C mmhe engine, {self.workers} workers", seed, work, run, client)
        self.measure(name, "C1 mmhe engine, this process", 0, work, partial(engine, folds, seed=0))
        self.short_run(name, folds, epochs, engine)
        if main_model:
            for seed in range(seeds):
                run = partial(engine, folds, seed=seed, client=client, engine="fused")
                label = f"F fused STSTNet engine (opt-in), {self.workers} workers"
                self.measure(name, label, seed, work, run, client)
            fused_here = partial(engine, folds, seed=0, engine="fused")
            self.measure(name, "F1 fused STSTNet engine, this process", 0, work, fused_here)
            self.short_run(name, folds, epochs, partial(engine, engine="fused"), "F")
        if main_model:  # the worker memory settings: Dask's own vs mmhe.parallel's
            few = folds[: max(self.workers, len(folds) // 4)]
            few_work = sum(f.train_idx.size for f in few) * epochs
            with local_cluster(self.workers, environ={}) as default, Client(default) as other:
                other.run(warm_up, [name])
                for on, memory in ((other, "Dask's"), (client, "mmhe's")):
                    for what, fn in self.worker_runs(name, few, epochs, lr, on).items():
                        label = f"M {what}, {memory} worker memory settings"
                        self.measure(name, label, 0, few_work, fn, on)

    def short_run(
        self, name: str, folds: list, epochs: int, engine: Callable, row: str = "C"
    ) -> None:
        """Row ``row`` (seed 0, on the workers) again with a third of the epochs: with
        the full-length row it splits the run into a cost per sample-step and a cost per
        fold that does not grow with epochs (`projection`)."""
        short = max(1, epochs // 3)
        if short == epochs:
            return
        work = sum(f.train_idx.size for f in folds) * short
        label = f"{row}s same, {short} epoch{'s' if short > 1 else ''} (seed 0)"
        run = partial(engine, folds, epochs=short, seed=0, client=self.client)
        self.measure(name, label, 0, work, run, self.client)

    def worker_runs(
        self, name: str, folds: list, epochs: int, lr: float | None, on: Client
    ) -> dict[str, Callable]:
        """The plain loop, the engine and the fused engine on the workers of ``on``."""
        X, y, groups = self.data
        remote = on.scatter([X, y, groups], broadcast=True, hash=False)

        def plain() -> pd.DataFrame:
            futures = [
                on.submit(plain_loso, name, *remote, [f], epochs, lr, 0, 1, pure=False)
                for f in folds
            ]
            return pd.concat(on.gather(futures), ignore_index=True)

        engine = partial(run_folds, name, X, y, groups, folds, epochs=epochs, lr=lr, client=on)
        return {
            "plain loop": plain,
            "engine": partial(engine, device="cpu"),
            "fused engine": partial(engine, engine="fused"),
        }


def _random_inputs(sizes: tuple | dict, rng: np.random.Generator) -> torch.Tensor | dict:
    """Normal random float32 inputs of ``sizes`` (a shape, or {modality: shape} plus the
    "present" flags of a fusion model)."""
    if isinstance(sizes, dict):
        x = {m: torch.from_numpy(rng.normal(size=s).astype(np.float32)) for m, s in sizes.items()}
        n = next(iter(sizes.values()))[0]
        return x | {"present": torch.ones(n, len(sizes))}
    return torch.from_numpy(rng.normal(size=sizes).astype(np.float32))


def stacking(names: list[str], members: int = 8, epochs: int = 2) -> None:
    """Engine throughput per CPU-second with one member per group vs ``members`` per
    group, in this process, one thread."""
    print(f"\nfold stacking (torch.func.vmap), {members} members, {epochs} epochs, one thread:")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for name in names:
        spec = model_spec(name)
        batch = spec.defaults.batch_size
        n = 4 * batch
        shape = spec.example_shape
        if isinstance(shape, dict):
            sizes = {m: (n, *s) for m, s in shape.items()}
        else:
            sizes = (n, *shape)

        group = [
            Member(
                _random_inputs(sizes, rng),
                torch.from_numpy(rng.integers(0, 3, n)),
                fold_seeds(0, f),
            )
            for f in range(members)
        ]
        factory = partial(build_model, name, n_classes=3, **spec.shape_kwargs(sizes))
        first = group[0]
        rows = np.arange(batch)
        x0 = (
            {k: v[rows] for k, v in first.x.items()} if isinstance(first.x, dict) else first.x[rows]
        )
        flops = profile_step(factory(), x0, first.y[rows]).flops
        rates = {}
        for size in (1, members):
            settings = resolve_settings(name, epochs=1, folds_per_group=size, device="cpu")
            train_models(factory, group[:size], settings)  # warm-up
            settings = resolve_settings(name, epochs=epochs, folds_per_group=size, device="cpu")
            started = time.process_time()
            train_models(factory, group, settings)
            rates[size] = members * n * epochs / (time.process_time() - started)
        print(
            f"  {name:16s} batch {batch:3d}: {flops / 1e6:8.1f} MFLOP per step; "
            f"1 per group {rates[1]:8.0f}, {members} per group {rates[members]:8.0f} "
            f"sample-steps per CPU-s ({rates[members] / rates[1]:.2f}x)",
            flush=True,
        )


def _least_cpu_ms(steps: dict[str, Callable[[], None]], repeats: int, rounds: int = 3) -> dict:
    """Least CPU milliseconds per call of each step, measured side by side: ``rounds``
    rounds, each timing ``repeats`` calls of every step in turn (after one call each)."""
    for step in steps.values():
        step()
    best = dict.fromkeys(steps, np.inf)
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.process_time()
            for _ in range(repeats):
                step()
            best[name] = min(best[name], (time.process_time() - started) / repeats)
    return {name: 1e3 * seconds for name, seconds in best.items()}


def _plain_step(name: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One step of the plain loop: next `DataLoader` batch, default `Adam`."""
    spec = model_spec(name)
    model = build_model(name, n_classes=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.defaults.lr)
    loader = DataLoader(
        TensorDataset(x, y), batch_size=spec.defaults.batch_size, shuffle=True, drop_last=True
    )
    batches = iter(())

    def step() -> None:
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()

    return step


def _forward_backward(name: str, x: torch.Tensor, y: torch.Tensor, masks: list) -> Callable:
    """The module's training forward and backward alone, dropout masks given."""
    model = build_model(name, n_classes=3).train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        recorded_loss(model, x, y, masks)[0].backward()

    return step


def step_anatomy(names: list[str], repeats: int = 20) -> None:
    """CPU milliseconds of one training step at the model's published batch, one thread,
    in this process: the plain loop's step (`DataLoader` batch, default `Adam`); the
    engine's step (`mmhe.evaluation.engine._OneMember`: channels-last, recorded dropout
    masks, fused Adam); and the module's own forward and backward alone (masks drawn
    beforehand, no optimiser, the faster of the two layouts). The last is the least any
    trainer that runs this module's kernels spends per step, so plain / forward+backward
    bounds what an engine over the same `nn.Module` can gain. Measured side by side, the
    least of 3 rounds, with the `mmhe` command's allocator settings (`tune_allocator`,
    from here on in this process: the table's rows above ran without them)."""
    print("\nstep anatomy (CPU ms per step, one thread, the published batch):")
    torch.set_num_threads(1)
    tune_allocator()  # without it the same STSTNet step took 24 to 36 ms from run to run
    cpu = torch.device("cpu")
    for name in names:
        batch = model_spec(name).defaults.batch_size
        torch.manual_seed(0)
        x, y = torch.randn(4 * batch, 3, 28, 28), torch.randint(0, 3, (4 * batch,))
        settings = resolve_settings(name, epochs=1, device="cpu")
        member = Member(x, y, fold_seeds(0, 0))
        group = _OneMember([build_model(name, n_classes=3)], [member], settings, cpu, True)
        rows = [np.arange(batch)]
        masks = [torch.ones(c.shape) for c in group._dropout_calls(x[:batch], y[:batch])]
        steps = {
            "plain": _plain_step(name, x, y),
            "engine": partial(group.step, rows),
            **{
                str(layout): _forward_backward(
                    name, x[:batch].contiguous(memory_format=layout), y[:batch], masks
                )
                for layout in (torch.contiguous_format, torch.channels_last)
            },
        }
        ms = _least_cpu_ms(steps, repeats)
        t_plain, t_engine = ms.pop("plain"), ms.pop("engine")
        t_floor = min(ms.values())
        print(
            f"  {name:12s} batch {batch:3d}: plain {t_plain:6.1f}, engine {t_engine:6.1f}, "
            f"module forward + backward alone {t_floor:6.1f} ms; engine gain "
            f"{t_plain / t_engine:.2f}x, most any engine over this module can gain "
            f"{t_plain / t_floor:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ststnet,offapexnet")
    parser.add_argument("--folds", type=int, default=24, help="LOSO folds measured (STSTNet)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (STSTNet)")
    parser.add_argument("--other-folds", type=int, default=6, help="folds, other models")
    parser.add_argument("--other-epochs", type=int, default=2, help="epochs, other models")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3, help="STSTNet (5e-5 x 500 epochs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stacking-models", default="physio_mlp,early_fusion,eeg_tcn,ststnet")
    args = parser.parse_args()
    names = args.models.split(",")
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # shutdown chatter

    X, y, groups = synthetic_mmhe()
    all_folds = list(loso(groups))
    rng = np.random.default_rng(0)
    print(
        f"synthetic MMHE: {len(np.unique(groups))} participants, {len(y)} MEs, X {X.shape[1:]}, "
        f"classes {np.bincount(y).tolist()}; {os.cpu_count()} CPUs; torch {torch.__version__}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    warm_up(names)
    peak = matmul_gflops()
    started = time.perf_counter()
    cluster = local_cluster(args.workers)
    client = Client(cluster)
    startup = time.perf_counter() - started
    try:
        client.run(warm_up, names)
        worker_peaks = list(client.run(matmul_gflops).values())
        print(
            f"matmul limit: {peak:.1f} GFLOP per CPU-second in this process, "
            f"{', '.join(f'{p:.1f}' for p in worker_peaks)} on the workers (at once); "
            f"cluster start-up {startup:.1f} s (paid once per session)\n"
        )
        bench = Bench(client, (X, y, groups), args.workers)
        for name in names:
            main_model = name == "ststnet"
            n_folds = args.folds if main_model else args.other_folds
            epochs = args.epochs if main_model else args.other_epochs
            lr = args.lr if main_model else None
            folds = [all_folds[i] for i in np.sort(rng.choice(len(all_folds), n_folds, False))]
            work = sum(f.train_idx.size for f in folds) * epochs
            print(
                f"{name}: {n_folds} of {LOSO_FOLDS} LOSO folds x {epochs} epochs = {work:,} "
                f"sample-steps per run, batch {model_spec(name).defaults.batch_size}, "
                f"lr {lr or model_spec(name).defaults.lr}"
            )
            bench.model(name, folds, epochs, lr, args.seeds if main_model else 1)
    finally:
        client.close()
        cluster.close()
    report(pd.DataFrame(bench.rows), names, all_folds, args.workers, peak, bench.folds)
    if args.stacking_models:
        stacking(args.stacking_models.split(","))
    step_anatomy(names)


def report(
    frame: pd.DataFrame,
    names: list[str],
    all_folds: list,
    workers: int,
    peak: float,
    n_folds: dict[str, int],
) -> None:
    """Print the table, the ratios, the accuracy check and the projections."""
    frame["rate"] = frame.work / frame.wall_s
    frame["per_cpu_s"] = frame.work / frame.cpu_s
    table = (
        frame.groupby(["model", "run"], sort=False)
        .agg(
            seeds=("seed", "size"),
            load=("load", "mean"),
            sample_steps_per_s=("rate", "mean"),
            per_cpu_s=("per_cpu_s", "mean"),
        )
        .reset_index()
    )
    for model in names:
        mine = table.model == model
        base = table[mine & table.run.str.startswith("A plain")].iloc[0]
        table.loc[mine, "x_wall"] = table.loc[mine, "sample_steps_per_s"] / base.sample_steps_per_s
        table.loc[mine, "x_cpu"] = table.loc[mine, "per_cpu_s"] / base.per_cpu_s
        flops = flops_per_sample(model, model_spec(model).defaults.batch_size)
        table.loc[mine, "MFLOP_per_sample_step"] = flops / 1e6
        table.loc[mine, "GFLOP_per_s"] = table.loc[mine, "sample_steps_per_s"] * flops / 1e9
        table.loc[mine, "GFLOP_per_cpu_s"] = table.loc[mine, "per_cpu_s"] * flops / 1e9
    table["pct_of_peak"] = 100 * table.GFLOP_per_cpu_s / peak
    pd.set_option("display.width", 250)
    print(
        "\nsummary (mean over seeds; x_wall, x_cpu: ratio to the plain single-thread loop A "
        "of the same model, by wall time and by CPU time; pct_of_peak: GFLOP per CPU-second "
        f"against the matmul limit {peak:.1f}):"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    if "ststnet" in names:
        mine = frame[frame.model == "ststnet"]
        plain = mine[mine.run.str.startswith("A plain")]
        print(
            f"\nststnet pooled metrics per seed (mean, SD, range; Welch t-test against the "
            f"plain loop's {len(plain)} seeds; inside: seeds within the plain loop's range):"
        )
        for prefix in ("A plain", "C mmhe", "F fused"):
            runs = mine[mine.run.str.startswith(prefix)]
            for m in ("accuracy", "uf1"):
                values = runs[m].to_numpy()
                s = seed_spread(values, plain[m].to_numpy())
                print(
                    f"  {runs.run.iloc[0][:34]:34s} {m:8s} {s['mean']:.3f} ± {s['sd']:.3f} "
                    f"[{s['low']:.3f}, {s['high']:.3f}]  p = {s['welch_p']:.2f}  "
                    f"inside: {s['inside']}/{len(values)}  "
                    f"per seed: {', '.join(f'{v:.3f}' for v in values)}"
                )
    print(f"\nprojected full LOSO protocol ({LOSO_FOLDS} folds x published epochs):")
    for model in names:
        full = sum(f.train_idx.size for f in all_folds) * model_spec(model).defaults.epochs
        mine = table[table.model == model].set_index("run")
        engine = mine.loc[f"C mmhe engine, {workers} workers"]
        plain = mine.loc["A plain loop, 1 thread"]
        limit = full * engine.MFLOP_per_sample_step * 1e6 / (workers * peak * 1e9)
        print(
            f"  {model}: {full:,} sample-steps; engine on {workers} workers "
            f"{at_rates(engine, full, workers)}; "
            f"plain single-thread loop {full / plain.per_cpu_s / 3600:.2f} h on an idle core; "
            f"compute limit {limit / 3600:.2f} h on {workers} cores"
        )
        fused = f"F fused STSTNet engine (opt-in), {workers} workers"
        if fused in mine.index:
            print(
                f"  {model}, fused engine (opt-in) on {workers} workers: "
                f"{at_rates(mine.loc[fused], full, workers)}"
            )
        for row, what in (("C", "engine"), ("F", "fused engine")):
            hours = projection(frame, model, row, workers, full, n_folds.get(model))
            if hours is not None:
                print(
                    f"  {model}, {what}, per sample-step and per fold (rows {row} and {row}s): "
                    f"{hours[0]:.2f} h at this run's wall rate, {hours[1]:.2f} h on "
                    f"{workers} idle cores; {hours[2]:.2f} s of wall time per fold does not "
                    f"grow with epochs"
                )


def at_rates(row: pd.Series, full: int, workers: int) -> str:
    """Hours of ``full`` sample-steps at a table row's wall rate and on idle cores."""
    wall = full / row.sample_steps_per_s / 3600
    idle = full / (row.per_cpu_s * workers) / 3600
    return f"{wall:.2f} h at this run's wall rate, {idle:.2f} h on {workers} idle cores"


def seed_spread(values: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """A metric over seeds (``values``) against a reference trainer's seeds: mean, SD,
    range, Welch's t-test and the Mann-Whitney U test of values against reference (NaN
    with one value), and how many values fall inside the reference's range."""
    several = len(values) > 1 and len(reference) > 1
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "low": float(values.min()),
        "high": float(values.max()),
        "welch_p": ttest_ind(values, reference, equal_var=False).pvalue if several else np.nan,
        "mann_whitney_p": mannwhitneyu(values, reference).pvalue if several else np.nan,
        "inside": int(
            ((values >= reference.min() - 1e-9) & (values <= reference.max() + 1e-9)).sum()
        ),
    }


def projection(
    frame: pd.DataFrame, model: str, row: str, workers: int, full: int, n_folds: int | None
) -> tuple[float, float, float] | None:
    """(wall hours, idle-core hours, fixed wall seconds per fold) of the full protocol
    from row ``row`` (mean over its seeds) and its short run ``row``s (seed 0, the same
    folds): seconds = a per fold + b per sample-step, fitted through the two, so that a
    fold's set-up (building, probing and auditing it, predicting) counts once per fold
    and not once per epoch."""
    mine = frame[frame.model == model]
    long = mine[mine.run.str.startswith(f"{row} ") & mine.run.str.endswith(f"{workers} workers")]
    short = mine[mine.run.str.startswith(f"{row}s ")]
    if long.empty or short.empty or not n_folds:
        return None
    long, short = long[["wall_s", "cpu_s", "work"]].mean(), short.iloc[0]

    def fit(seconds: str) -> tuple[float, float]:  # (per fold, per sample-step)
        per_step = (long[seconds] - short[seconds]) / (long.work - short.work)
        return (long[seconds] - per_step * long.work) / n_folds, per_step

    wall_fold, wall_step = fit("wall_s")
    cpu_fold, cpu_step = fit("cpu_s")
    wall = LOSO_FOLDS * wall_fold + full * wall_step
    idle = (LOSO_FOLDS * cpu_fold + full * cpu_step) / workers
    return wall / 3600, idle / 3600, wall_fold


if __name__ == "__main__":
    main()
