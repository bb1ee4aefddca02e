"""Does the training engine learn as well as the plain loop? Many seeds of each, compared.

`bench_training.py` prints the accuracy of 3 seeds per trainer; 3 seeds cannot tell a
real difference from chance. This script trains STSTNet (or ``--model``) on the same LOSO
folds of the same synthetic MMHE set as `bench_training.py` (``--folds`` folds x
``--epochs`` epochs) with ``--seeds`` seeds each way:

- plain: `bench_training.plain_loso`, the textbook loop (`DataLoader(shuffle=True)`,
  `torch.optim.Adam`, `torch.nn.Dropout`), one fold after another;
- engine: `mmhe.evaluation.run_folds` (``--engine``: ``auto`` or ``fused``).

Both are random in the same ways (initial weights, batch order, dropout masks), from
different generators, so their seeds give two samples of the same distribution if the
engine is right. Printed per metric (pooled accuracy, UF1): mean ± SD and range of each,
Welch's t-test and the Mann-Whitney U test of engine against plain, and how many engine
seeds fall inside the plain loop's range. The seeds run as tasks on a local Dask cluster
(one thread per worker).

    python benchmarks/engine_accuracy.py --seeds 24     # 805 s on 2 cores

Measured (2 cores, 24 folds x 6 epochs, lr 1e-3, 24 seeds each): accuracy 0.816 ± 0.020
plain against 0.813 ± 0.021 engine (Welch p = 0.66), UF1 0.743 ± 0.041 against
0.730 ± 0.045 (p = 0.30); 22 and 23 of the 24 engine seeds inside the plain range. With
the first 12 seeds alone the UF1 gap looked larger (0.753 against 0.721, p = 0.09). The
engine's seeds 0-2 equal the bench's row C (0.774, 0.826, 0.806), trained on the workers
there and in tasks here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from distributed import Client

from mmhe.evaluation import loso, pooled_scores, run_folds
from mmhe.parallel import local_cluster

METRICS = ("accuracy", "uf1")
BENCHMARKS = str(Path(__file__).resolve().parent)  # bench_training.py, for the workers too


def one_seed(kind: str, model: str, n_folds: int, epochs: int, lr: float, seed: int) -> dict:
    """Pooled scores of one seed of ``kind`` ("plain" or an engine name)."""
    import torch

    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    from bench_training import plain_loso, synthetic_mmhe

    torch.set_num_threads(1)
    X, y, groups = synthetic_mmhe()
    every = list(loso(groups))
    rng = np.random.default_rng(0)  # the folds bench_training.py measures
    folds = [every[i] for i in np.sort(rng.choice(len(every), n_folds, False))]
    if kind == "plain":
        table = plain_loso(model, X, y, groups, folds, epochs, lr, seed)
    else:
        table = run_folds(
            model, X, y, groups, folds, epochs=epochs, lr=lr, device="cpu", seed=seed, engine=kind
        )
    scores = pooled_scores(table.y_true, table.y_pred, [0, 1, 2])
    return {"kind": kind, "seed": seed} | {m: float(scores[m]) for m in METRICS}


def compare(results: list[dict], engine: str) -> None:
    """Print each metric's spread, tests and overlap, engine against plain
    (`bench_training.seed_spread`)."""
    from bench_training import seed_spread

    for metric in METRICS:
        plain = np.array([r[metric] for r in results if r["kind"] == "plain"])
        other = np.array([r[metric] for r in results if r["kind"] == engine])
        ref, s = seed_spread(plain, plain), seed_spread(other, plain)
        print(
            f"  {metric:8s} plain {ref['mean']:.3f} ± {ref['sd']:.3f} "
            f"[{ref['low']:.3f}, {ref['high']:.3f}]  {engine} {s['mean']:.3f} ± "
            f"{s['sd']:.3f} [{s['low']:.3f}, {s['high']:.3f}]  "
            f"Welch p = {s['welch_p']:.2f}, Mann-Whitney p = {s['mann_whitney_p']:.2f}; "
            f"{s['inside']}/{len(other)} {engine} seeds inside the plain range"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ststnet")
    parser.add_argument("--engine", default="auto", help="auto or fused (STSTNet)")
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--folds", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.seeds < 3:
        parser.error("--seeds must be at least 3 to compare spreads")
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        futures = [
            client.submit(
                one_seed, kind, args.model, args.folds, args.epochs, args.lr, seed, pure=False
            )
            for seed in range(args.seeds)
            for kind in ("plain", args.engine)
        ]
        results = client.gather(futures)
    print(
        f"{args.model}: {args.folds} LOSO folds x {args.epochs} epochs, lr {args.lr}, "
        f"{args.seeds} seeds each, plain loop against engine {args.engine!r} "
        f"({time.perf_counter() - started:.0f} s):"
    )
    compare(results, args.engine)


if __name__ == "__main__":
    main()
