"""Provenance keys of benchmark folds: a finished fold is reused only for the same inputs.

A fold's key hashes what its predictions depend on, measured rather than named:

- ``spec``: the run's settings (model, task, modalities, protocol, epochs, batch size,
  learning rate, early stopping, seed, control);
- ``data:<input>``: the bytes of every input array the model sees (after feature
  extraction), so a re-ingest, a changed coding cell, another feature parameter or band
  table, or a changed raw file all change it;
- ``labels``: labels (after a control's shuffle), participants, trials, stimuli, sample
  ids and class names;
- ``split``: the fold's training and test sample indices;
- ``code``: `TRAINING_CODE`, bumped when the engine gives other numbers for the same
  inputs.

`changed_parts` names what differs between a recorded key and the current one, for the
line that explains a recompute (or a refusal with ``recompute=False``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

TRAINING_CODE = 3
"""Version of the training engine's numbers (bump when the same inputs give others)."""


def array_digest(array: Any) -> str:
    """BLAKE2b of an array's dtype, shape and bytes (16 hex digits)."""
    a = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.blake2b(digest_size=8)
    if a.dtype.kind in "OUS":
        digest.update(json.dumps([str(v) for v in a.ravel().tolist()]).encode())
    else:
        digest.update(a.tobytes())
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    return digest.hexdigest()


def text_digest(payload: Any) -> str:
    """BLAKE2b of a JSON-serialisable payload (16 hex digits, key order ignored)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def fold_parts(
    spec: Mapping[str, Any],
    inputs: Mapping[str, str],
    labels: str,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
) -> dict[str, str]:
    """The named digests a fold's key is made of (see the module docstring)."""
    parts = {"spec": text_digest(spec), "labels": labels, "code": str(TRAINING_CODE)}
    parts |= {f"data:{name}": digest for name, digest in sorted(inputs.items())}
    parts["split"] = array_digest(np.concatenate([[len(train_idx)], train_idx, test_idx]))
    return parts


def fold_key(parts: Mapping[str, str]) -> str:
    """The provenance key of a fold from its parts (20 hex digits)."""
    text = json.dumps(sorted(parts.items()))
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def changed_parts(before: Mapping[str, str] | None, now: Mapping[str, str]) -> list[str]:
    """Names of the parts that differ (every part when nothing was recorded)."""
    if not before:
        return ["everything (no provenance recorded)"]
    names = sorted(set(before) | set(now))
    return [n for n in names if before.get(n) != now.get(n)]
