"""Run independent tasks through Dask: a local cluster, an existing one, or in-process.

scheduler : None (or ``"local"``) starts a `distributed.LocalCluster` (processes, one
thread each, dashboard off);
``"tcp://host:8786"`` (any address) connects to an existing scheduler; ``"sync"`` runs the
tasks one after another in this process (debugging, tests, tiny jobs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Task = tuple  # (function, *arguments)


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
    scheduler = None if scheduler == "local" else scheduler
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
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler and scheduler != "local":
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
