"""Shared test configuration and fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory):
    """A `tiny` synthetic raw tree (3 participants), generated once per test session.

    Read-only for tests: copy it (shutil.copytree) before damaging it.
    """
    from mmhe.synth import generate

    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate(root, preset="tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def store_tiny(synth_tiny, tmp_path_factory):
    """`synth_tiny` ingested in this process; returns the version folder."""
    from mmhe.store import ingest

    out = tmp_path_factory.mktemp("stores") / "tiny"
    return ingest(synth_tiny, out, scheduler="sync")
