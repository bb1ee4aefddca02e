"""Run independent tasks through Dask: a local cluster, an existing one, or in-process.

scheduler : None or ``"auto"`` chooses (`choose_scheduler`): a local cluster only where
it was measured to pay; ``"local"`` starts a `distributed.LocalCluster` (processes, one
thread each, with `WORKER_ENVIRON`); ``"tcp://host:8786"`` (any address) connects to an
existing scheduler; ``"sync"`` runs the tasks one after another in this process.

Measured on the demo preset (10 participants), 2-core machine, local cluster of 2
workers against this process, 3 alternated pairs each (``mmhe ingest RAW --scheduler
sync|local``, ``mmhe features STORE --flow dis|tvl1 --scheduler sync|local``):

- ingest: 22.2 s in this process against 20.3 s on the cluster (1.09x); features with DIS
  flow 34.8 s against 28.1 s (1.24x), with TV-L1 44.1 s against 35.4 s (1.25x). The
  cluster costs more CPU seconds (ingest 1.26x, features 1.16x with DIS, 1.02x with
  TV-L1): every worker imports MNE, NeuroKit2, OpenCV and torch again, and results
  travel by pickling; the second core more than pays for it. So "auto" uses a local
  cluster from `LOCAL_CLUSTER_MIN_CORES` = 2 cores when there are at least two tasks
  per worker. (Before the allocator settings of `WORKER_ENVIRON`, the cluster was no
  faster than this process on 2 cores, and "auto" kept ingest and features here below
  4 cores.) `mmhe demo` starts one cluster for ingest, features and training.
- training folds (the benchmark; minutes of CPU per task, little data): on a quiet
  machine the cluster took 132 s against 241 s in this process (3 seeds).

Inside one task, `task_threads` says how many threads it may use (its worker's count in
a cluster, every core in this process): the EEG session filter runs its FFTs on them and
ingest writes arrays in a background thread (`background_writes`) while it decodes the
next block of the recording.

The system time of workers (x2.5 ingest, x12.7 features before) was Dask's
``MALLOC_TRIM_THRESHOLD_`` freezing glibc's mmap threshold at 128 KiB: every array above
it became a fresh ``mmap`` whose pages fault in again. `WORKER_ENVIRON` undoes it (the
features' worker system time fell from 38-42 s to 8-9 s). BLAS/OpenMP threads are not
the cause: Dask already starts workers with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

Task = tuple  # (function, *arguments)

LOCAL_CLUSTER_MIN_CORES = 2
"""Cores from which ``scheduler="auto"`` starts a local cluster (see the module doc)."""

WORKER_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(512 * 2**20),
}
"""glibc allocator settings of the worker processes `dask_client` starts.

Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (return freed memory to the
system at once). Setting it also freezes glibc's mmap threshold at 128 KiB, so every
activation tensor of a training step becomes a fresh ``mmap`` whose pages fault in again
(3,100 page faults per 12.8 MB tensor against 500 with these settings): STSTNet training
needed 2.0x (plain loop), 2.5x (engine) and 2.7x (fused engine) more CPU time per
sample-step (``benchmarks/bench_training.py``, rows M). These values keep blocks below
32 MiB on the heap and let a worker keep up to 512 MiB of freed memory. For a cluster
started elsewhere, put them in its ``distributed.nanny.pre-spawn-environ``
configuration.
"""


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def tune_allocator() -> bool:
    """Give this process `WORKER_ENVIRON`'s glibc allocator settings (``mallopt``), as
    the `mmhe` command does at start; False where there is no glibc, or when the
    environment already sets either value (yours win).

    glibc's default mmap threshold starts at 128 KiB and only grows after a large block
    is freed, so each new size of a big array (an EEG block, a decoded frame) comes from
    a fresh ``mmap`` whose pages fault in, and are zeroed by the kernel, on first write.
    Measured on the demo raw tree (``mmhe ingest --scheduler sync``, 2 alternating runs
    each): 307,000 -> 116,000 minor page faults, system time 14.7-15.7 -> 11.0-13.1 s,
    wall 29.3-30.0 -> 26.2-26.5 s. The cost: the process keeps up to 512 MiB of freed
    memory instead of returning it at once. Library calls leave the allocator alone.
    """
    if any(name in os.environ for name in WORKER_ENVIRON) or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another libc
        return False
    mmap = int(WORKER_ENVIRON["MALLOC_MMAP_THRESHOLD_"])
    trim = int(WORKER_ENVIRON["MALLOC_TRIM_THRESHOLD_"])
    return bool(mallopt(M_MMAP_THRESHOLD, mmap)) and bool(mallopt(M_TRIM_THRESHOLD, trim))


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
    scheduler = choose_scheduler(scheduler, len(tasks), n_workers)
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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def task_threads() -> int:
    """Threads one task may use: its Dask worker's thread count inside a worker (one, in
    `local_cluster`), else every usable core (a run in this process has them all)."""
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return int(get_worker().state.nthreads)
        except ValueError:  # not in a worker
            pass
    return usable_cores()


@contextmanager
def background_writes(pending: int = 2) -> Iterator[Callable[..., None]]:
    """``submit(function, *arguments)`` runs calls in one background thread, in order,
    while the caller goes on (compressing and writing one block while the next is read
    and decoded); at most ``pending`` calls wait. On leaving the block every call has
    finished, and the first call that raised re-raises here. With one usable thread
    (`task_threads`, e.g. in a single-threaded Dask worker) calls run at once, in the
    caller. The caller must not change an array it has submitted.
    """
    if task_threads() < 2:
        yield lambda function, *arguments: function(*arguments)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    waiting: deque = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmhe-write") as pool:

        def submit(function: Callable[..., Any], *arguments: Any) -> None:
            while len(waiting) >= pending:
                waiting.popleft().result()
            waiting.append(pool.submit(function, *arguments))

        try:
            yield submit
        except BaseException:
            for future in waiting:
                future.cancel()
            raise
        while waiting:
            waiting.popleft().result()


@contextmanager
def opencv_threads(count: int | None = None) -> Iterator[None]:
    """OpenCV's thread pool at ``count`` threads for the block (default `task_threads`,
    never more than OpenCV had), then restored.

    In a one-thread Dask worker OpenCV would otherwise run a pool per core beside the
    other workers: on the demo store one OpenCV thread instead of two cost 0.05-0.10
    CPU-s (4-8 %) less per participant of face features (one process, 3 alternated
    runs), with identical feature files.
    """
    import cv2

    before = cv2.getNumThreads()
    wanted = task_threads() if count is None else count
    cv2.setNumThreads(min(before, wanted) if before > 0 else wanted)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class ProcessWide:
    """A process-wide change held while any of overlapping blocks is open.

    ``apply()`` makes the change and returns its undo. With ``held()`` blocks that
    overlap (nested, or in several threads) the first one to enter applies it and the
    last one to leave undoes it, so no block sees it undone by another. ``blocks``: how
    many are open.
    """

    def __init__(self, apply: Callable[[], Callable[[], None]]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._undo: Callable[[], None] | None = None
        self.blocks = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self.blocks == 0:
                self._undo = self._apply()
            self.blocks += 1
        try:
            yield
        finally:
            with self._lock:
                self.blocks -= 1
                if self.blocks == 0 and self._undo is not None:
                    undo, self._undo = self._undo, None
                    undo()


def _limit_blas() -> Callable[[], None]:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas").restore_original_limits


_ONE_BLAS_THREAD = ProcessWide(_limit_blas)


def one_blas_thread() -> AbstractContextManager[None]:
    """BLAS (OpenBLAS, MKL: whatever numpy and scipy load) on one thread for the block,
    then as before (threadpoolctl).

    The feature tasks' linear algebra is small (e.g. the skin-temperature slope, a
    least-squares line through a trial), yet OpenBLAS wakes its other threads for it and
    they spin. Dask's workers already run BLAS on one thread (its nanny sets
    ``OPENBLAS_NUM_THREADS=1``); a run in this process ("sync") used every core: on the
    demo store (2 cores) physiology features took 1.21-1.25 CPU-s per participant with
    two BLAS threads and 0.78-0.83 with one, in the same wall time (0.78-0.83 s). The
    feature files are identical but for the trials' skin-temperature slopes (2e-15
    relative: the fit's sums are split differently across threads). The count is
    process-wide (`ProcessWide`): the first of overlapping blocks sets it and the last
    one restores it.
    """
    return _ONE_BLAS_THREAD.held()


def choose_scheduler(
    scheduler: str | None,
    n_tasks: int,
    n_workers: int = 2,
) -> str | None:
    """The scheduler a run of ``n_tasks`` tasks uses: "sync", None (a new local cluster)
    or an address.

    None / "auto": "sync" when fewer than `LOCAL_CLUSTER_MIN_CORES` cores are usable,
    when there are fewer tasks than two per worker or a single worker, else a local
    cluster (see the module doc for the measurements behind it); "local": a local
    cluster; "sync" and addresses are kept.
    """
    if scheduler in (None, "auto"):
        if n_workers < 2 or n_tasks < 2 * n_workers or usable_cores() < LOCAL_CLUSTER_MIN_CORES:
            return "sync"
        return None
    if scheduler == "local":
        return None
    return scheduler


@contextmanager
def dask_client(scheduler: str | None, n_workers: int = 2) -> Iterator[Any]:
    """A `distributed.Client` of `scheduler` (an address) or of a new local cluster of
    `n_workers` single-threaded processes; closed (and the cluster shut down) on exit."""
    from distributed import Client

    cluster = None
    if scheduler and scheduler != "local":
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
    """A `distributed.LocalCluster` of ``n_workers`` single-threaded processes started
    with ``environ`` (default `WORKER_ENVIRON`) on top of Dask's worker environment.

    Dask's nanny lets this process's environment override its configuration and
    writes its own settings into this environment when it starts a worker; both are
    undone here, so each cluster gets exactly the settings asked for.
    """
    import dask
    from distributed import LocalCluster

    key = "distributed.nanny.pre-spawn-environ"
    environ = WORKER_ENVIRON if environ is None else environ
    settings = {**dask.config.get(key, {}), **environ}
    names = set(settings) | set(WORKER_ENVIRON)
    saved = {name: os.environ.pop(name, None) for name in names}
    try:
        with dask.config.set({key: settings}):
            return LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
