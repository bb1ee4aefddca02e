"""STSTNet training throughput: a plain PyTorch loop vs mmhe's multi-fold engine, same run.

A synthetic set shaped like MMHE (275 participants, 1,536 MEs, 3 x 28 x 28 flow images,
3 classes, planted class signal) is evaluated leave-one-subject-out on a random subset
of ``--folds`` participants (the full 275-fold protocol takes hours; throughput is per
sample-step, so the subset measures it faithfully and the full wall time is
extrapolated):

A. plain loop: one fold after another in this process (``--plain-threads`` torch
   threads, default 1: the issue's "4,000 samples/s on one core" reference; with 2 threads
   OpenMP barriers make small networks slower, not faster, when other jobs share the
   cores), the textbook code: per-fold z-scoring, `STSTNet`, Adam, `DataLoader(shuffle=True)`,
   batch 256; ``--seeds`` seeds (their spread is the reference for the metrics);
B. the same plain loop, one fold per task on a Dask `LocalCluster` of ``--workers``
   single-threaded processes (plain code using every core; its tasks get the same
   `tune_allocator` fix of Dask's worker memory settings as the engine);
C. `mmhe.evaluation.run_folds("ststnet", ...)` (multi-fold engine) on the same cluster,
   ``--seeds`` seeds;
D. the plain loop of A once more (seed 0) with torch's default threads (all cores).

Every process first trains both ways on a few samples (warm-up) and gets the same glibc
allocator settings (`tune_allocator`), so the three runs differ only in the training
code and in how it uses the cores.

Throughput = sum over folds of (training samples x epochs) / wall seconds. The CPU
seconds of all processes involved are reported too: on a machine shared with other jobs
wall time depends on their load, sample-steps per CPU-second much less. Cluster
start-up is reported separately (paid once per session). Run:

    .venv/bin/python benchmarks/bench_training.py --folds 24 --epochs 6 --seeds 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from mmhe.evaluation import loso, paired_permutation_test, pooled_scores, run_folds
from mmhe.evaluation.training import tune_allocator
from mmhe.models import STSTNet

PUBLISHED_EPOCHS = 500


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


def plain_loso(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    threads: int | None = None,
) -> pd.DataFrame:
    """The plain PyTorch loop, one fold after another."""
    if threads:
        torch.set_num_threads(threads)
        tune_allocator()  # on Dask workers: the same allocator fix the engine gets
    rows = []
    for fold in folds:
        x_train, x_test = X[fold.train_idx], X[fold.test_idx]
        mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
        std = x_train.std(axis=(0, 2, 3), keepdims=True)
        x_train = torch.from_numpy((x_train - mean) / std)
        x_test = torch.from_numpy((x_test - mean) / std)
        torch.manual_seed(seed * 100_003 + fold.index)
        model = STSTNet(n_classes=3)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        loader = DataLoader(
            TensorDataset(x_train, torch.from_numpy(y[fold.train_idx])),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed * 100_003 + fold.index),
        )
        model.train()
        for _ in range(epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
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


def warm_up() -> None:
    """Run both trainers once on a few samples (imports, kernel selection, allocator)."""
    tune_allocator()
    X, y, groups = synthetic_mmhe(1, n_people=4, n_samples=64)
    folds = list(loso(groups))[:2]
    plain_loso(X, y, groups, folds, 1, 1e-3, 16, 0)
    run_folds("ststnet", X, y, groups, folds, epochs=1, batch_size=16, folds_per_group=2)


def _scores(table: pd.DataFrame) -> dict[str, float]:
    return pooled_scores(table.y_true, table.y_pred, labels=[0, 1, 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=24, help="LOSO folds measured")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3, help="5e-5 in the paper (x 500 epochs)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folds-per-group", type=int, default=4)
    parser.add_argument("--plain-threads", type=int, default=1)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    X, y, groups = synthetic_mmhe()
    all_folds = list(loso(groups))
    chosen = np.sort(np.random.default_rng(0).choice(len(all_folds), args.folds, replace=False))
    folds = [all_folds[i] for i in chosen]
    work = sum(f.train_idx.size for f in folds) * args.epochs
    full = sum(f.train_idx.size for f in all_folds) * PUBLISHED_EPOCHS
    print(
        f"synthetic MMHE: {len(np.unique(groups))} participants, {len(y)} MEs, X {X.shape[1:]}, "
        f"classes {np.bincount(y).tolist()}; measuring {len(folds)} of {len(all_folds)} LOSO "
        f"folds x {args.epochs} epochs = {work:,} sample-steps per run; batch {args.batch_size}, "
        f"lr {args.lr}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    results = []

    def record(name: str, seconds: float, cpu: float, table: pd.DataFrame, seed: int) -> None:
        row = {
            "run": name,
            "seed": seed,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "sample_steps_per_s": work / seconds,
            "per_cpu_second": work / cpu,
        }
        row |= {k: v for k, v in _scores(table).items() if k != "n"}
        results.append(row)
        print(
            f"  {name:32s} seed {seed}  {seconds:7.1f} s  {work / seconds:8.0f} sample-steps/s"
            f"  ({work / cpu:6.0f} per CPU-second)  load {os.getloadavg()[0]:.1f}"
        )

    plain_tables, engine_tables = [], []
    threads = args.plain_threads
    torch.set_num_threads(threads)
    warm_up()  # first-call costs (kernel selection, allocator growth) are not throughput
    for seed in range(args.seeds):
        started, cpu = time.perf_counter(), time.process_time()
        table = plain_loso(X, y, groups, folds, args.epochs, args.lr, args.batch_size, seed)
        record(
            f"A plain loop, {threads} threads",
            time.perf_counter() - started,
            time.process_time() - cpu,
            table,
            seed,
        )
        plain_tables.append(table)
    cores = os.cpu_count() or 1
    if cores > threads:  # the same loop with torch's default intra-op threads
        torch.set_num_threads(cores)
        started, cpu = time.perf_counter(), time.process_time()
        table = plain_loso(X, y, groups, folds, args.epochs, args.lr, args.batch_size, 0)
        record(
            f"D plain loop, {cores} threads",
            time.perf_counter() - started,
            time.process_time() - cpu,
            table,
            0,
        )
        torch.set_num_threads(threads)

    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client.run(lambda: torch.set_num_threads(1))
    startup = time.perf_counter() - started
    client.run(warm_up)

    def cpu_now() -> float:  # CPU seconds of this process (scheduler) and every worker
        return time.process_time() + sum(client.run(time.process_time).values())

    print(f"  LocalCluster({args.workers} workers x 1 thread) start-up: {startup:.1f} s")
    try:
        x_remote, y_remote, g_remote = client.scatter([X, y, groups], broadcast=True)
        started, cpu = time.perf_counter(), cpu_now()
        futures = [
            client.submit(
                plain_loso,
                x_remote,
                y_remote,
                g_remote,
                [f],
                args.epochs,
                args.lr,
                args.batch_size,
                0,
                1,
                pure=False,
            )
            for f in folds
        ]
        table = pd.concat(client.gather(futures), ignore_index=True)
        record(
            f"B plain loop, {args.workers} workers",
            time.perf_counter() - started,
            cpu_now() - cpu,
            table,
            0,
        )
        for seed in range(args.seeds):
            started, cpu = time.perf_counter(), cpu_now()
            table = run_folds(
                "ststnet",
                X,
                y,
                groups,
                folds,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                seed=seed,
                client=client,
                folds_per_group=args.folds_per_group,
            )
            record(
                f"C mmhe engine, {args.workers} workers",
                time.perf_counter() - started,
                cpu_now() - cpu,
                table,
                seed,
            )
            engine_tables.append(table)
    finally:
        client.close()
        cluster.close()

    frame = pd.DataFrame(results)
    print("\nper run:")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    rate = {name: part.sample_steps_per_s.mean() for name, part in frame.groupby("run")}
    per_cpu = {name: part.per_cpu_second.mean() for name, part in frame.groupby("run")}
    plain_a = rate[f"A plain loop, {threads} threads"]
    plain_b = rate[f"B plain loop, {args.workers} workers"]
    engine = rate[f"C mmhe engine, {args.workers} workers"]
    print(
        f"\nthroughput (sample-steps/s): plain in-process {plain_a:,.0f}; plain on "
        f"{args.workers} worker processes {plain_b:,.0f}; mmhe engine {engine:,.0f}"
    )
    print(
        f"speed-up of the engine (wall): {engine / plain_a:.2f}x vs plain in-process, "
        f"{engine / plain_b:.2f}x vs plain on {args.workers} workers (target >= 3x)"
    )
    for name, value in rate.items():
        if name.startswith("D"):
            print(f"  vs {name} (torch default threads): {value:,.0f} -> {engine / value:.2f}x")
    cpu_a = per_cpu[f"A plain loop, {threads} threads"]
    cpu_b = per_cpu[f"B plain loop, {args.workers} workers"]
    cpu_c = per_cpu[f"C mmhe engine, {args.workers} workers"]
    print(
        f"per CPU-second: plain in-process {cpu_a:,.0f}, plain workers {cpu_b:,.0f}, engine "
        f"{cpu_c:,.0f} (engine {cpu_c / cpu_a:.2f}x / {cpu_c / cpu_b:.2f}x); with 2 idle cores "
        f"that is about {2 * cpu_c:,.0f} sample-steps/s for the engine and {2 * cpu_b:,.0f} "
        f"for two plain single-threaded loops"
    )
    metrics = ["accuracy", "uf1", "uar"]
    plain_m = frame[frame.run.str.startswith("A")][metrics]
    engine_m = frame[frame.run.str.startswith("C")][metrics]
    print(
        f"\npooled metrics over {len(folds)} folds ({sum(f.test_idx.size for f in folds)} "
        f"test MEs), {args.seeds} seeds:"
    )
    for m in metrics:
        lo, hi = plain_m[m].min(), plain_m[m].max()
        inside = ((engine_m[m] >= lo - 1e-9) & (engine_m[m] <= hi + 1e-9)).sum()
        print(
            f"  {m:8s} plain {plain_m[m].mean():.3f} [{lo:.3f}, {hi:.3f}]   engine "
            f"{engine_m[m].mean():.3f} [{engine_m[m].min():.3f}, {engine_m[m].max():.3f}]"
            f"   engine seeds inside plain range: {inside}/{len(engine_m)}"
        )
    for seed, (plain, engine_table) in enumerate(zip(plain_tables, engine_tables, strict=True)):
        merged = plain.merge(
            engine_table,
            on=["fold", "sample", "participant", "y_true"],
            suffixes=("_plain", "_engine"),
        )
        test = paired_permutation_test(
            merged.y_true,
            merged.y_pred_engine,
            merged.y_pred_plain,
            merged.participant,
            "uf1",
            n_perm=2000,
            seed=0,
        )
        print(
            f"  seed {seed}: paired permutation test engine vs plain, UF1 difference "
            f"{test['difference']:+.3f}, p = {test['p_value']:.3f}"
        )
    hours = {
        name: full / r / 3600
        for name, r in (
            ("plain in-process", plain_a),
            (f"plain on {args.workers} workers", plain_b),
            ("mmhe engine", engine),
        )
    }
    print(
        f"\nfull protocol: {len(all_folds)} folds x {PUBLISHED_EPOCHS} epochs = {full:,} "
        f"sample-steps; projected wall time: "
        + ", ".join(f"{k} {v:.1f} h" for k, v in hours.items())
        + f" (+ {startup:.0f} s cluster start-up)"
    )


if __name__ == "__main__":
    main()
