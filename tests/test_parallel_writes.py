"""`background_writes`: calls run in order in one background thread, every call has
finished when the block ends, errors reach the caller, and one thread means inline."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from mmhe import parallel
from mmhe.parallel import background_writes


def test_calls_run_in_order_in_another_thread_and_all_finish(monkeypatch):
    monkeypatch.setattr(parallel, "task_threads", lambda: 2)
    done: list[tuple[int, str]] = []

    def slow(i: int) -> None:
        time.sleep(0.01)
        done.append((i, threading.current_thread().name))

    with background_writes(pending=2) as submit:
        for i in range(8):
            submit(slow, i)
        assert len(done) < 8  # the caller went on while calls waited
    assert [i for i, _ in done] == list(range(8))
    assert {name for _, name in done} != {threading.current_thread().name}


def test_a_failing_call_raises_in_the_caller_and_later_calls_still_finish_or_stop(monkeypatch):
    monkeypatch.setattr(parallel, "task_threads", lambda: 2)
    done: list[int] = []

    def write(i: int) -> None:
        if i == 2:
            raise OSError("disk full")
        done.append(i)

    with pytest.raises(OSError, match="disk full"), background_writes(pending=1) as submit:
        for i in range(6):
            submit(write, i)
    assert done[:2] == [0, 1] and 2 not in done


def test_one_thread_runs_each_call_at_once_in_the_caller(monkeypatch):
    monkeypatch.setattr(parallel, "task_threads", lambda: 1)
    done: list[str] = []
    with background_writes() as submit:
        submit(lambda: done.append(threading.current_thread().name))
        assert done == [threading.current_thread().name]


ALLOCATE = """
import resource, sys
import numpy as np
from mmhe.parallel import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tune" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(20):  # 8 MB arrays, each a little larger than the last (as EEG blocks)
    block = np.empty(1_000_000 + 1_000 * step)
    block[:] = 1.0
    del block
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_freed_blocks_instead_of_faulting_in_new_pages():
    """`tune_allocator` (the `mmhe` command's start): big arrays of growing sizes stop
    costing fresh page faults; a value set in the environment is left alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def faults(mode: str, extra: dict[str, str] | None = None) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", ALLOCATE, mode],
            env=env | (extra or {}),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return out[0], int(out[1])

    default_state, default = faults("default")
    tuned_state, tuned = faults("tune")
    assert (default_state, tuned_state) == ("None", "True")
    assert default > 5_000  # fresh pages: 8,784 here (2,000 per 8 MB block faulted in)
    assert tuned < default / 4
    kept, _ = faults("tune", {"MALLOC_MMAP_THRESHOLD_": "1048576"})
    assert kept == "False"
