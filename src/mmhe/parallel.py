"""Run independent tasks through Dask: a local cluster, an existing one, or in-process.

scheduler : None starts a `distributed.LocalCluster` (processes, one thread each, with
`WORKER_ENVIRON`); ``"tcp://host:8786"`` (any address) connects to an existing
scheduler; ``"sync"`` runs the tasks one after another in this process (debugging,
tests, tiny jobs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Task = tuple  # (function, *arguments)

WORKER_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(512 * 2**20),
}
"""glibc allocator settings of the worker processes `dask_client` starts.

Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (return freed memory to the
system at once). Setting it also freezes glibc's mmap threshold at 128 KiB, so every
activation tensor of a training step becomes a fresh ``mmap`` whose pages fault in again:
training runs 2-3x slower (``benchmarks/bench_training.py``, row "engine, Dask's default
worker memory settings"). These values keep blocks below 32 MiB on the heap and let a
worker keep up to 512 MiB of freed memory. For a cluster started elsewhere, put them in
its ``distributed.nanny.pre-spawn-environ`` configuration.
"""


def run_tasks(
    tasks: Sequence[Task],
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Run ``function(*arguments)`` for every task; results in completion order.

    `progress` is called with each result as it arrives (e.g. to advance a progress bar).
    The first task that raises stops the run and re-raises its exception here.
    """
    progress = progress or (lambda result: None)
    if not tasks:
        return []
    if scheduler == "sync":
        results = []
        for function, *arguments in tasks:
            results.append(function(*arguments))
            progress(results[-1])
        return results
    from distributed import as_completed

    with dask_client(scheduler, n_workers) as client:
        futures = [
            client.submit(function, *arguments, pure=False) for function, *arguments in tasks
        ]
        results = []
        for future in as_completed(futures):
            results.append(future.result())
            progress(results[-1])
        return results


@contextmanager
def dask_client(scheduler: str | None, n_workers: int = 2) -> Iterator[Any]:
    """A `distributed.Client` of `scheduler` (an address) or of a new local cluster of
    `n_workers` single-threaded processes; closed (and the cluster shut down) on exit."""
    from distributed import Client

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = local_cluster(n_workers)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def local_cluster(n_workers: int = 2, environ: dict[str, str] | None = None) -> Any:
    """A `distributed.LocalCluster` of ``n_workers`` single-threaded processes whose
    environment includes ``environ`` (default `WORKER_ENVIRON`)."""
    import dask
    from distributed import LocalCluster

    key = "distributed.nanny.pre-spawn-environ"
    environ = WORKER_ENVIRON if environ is None else environ
    with dask.config.set({key: {**dask.config.get(key, {}), **environ}}):
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
