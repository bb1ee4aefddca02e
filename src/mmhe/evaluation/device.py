"""Where torch models train: ``--device auto|cpu|cuda``.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mmhe.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A `torch.device` from ``"auto"`` (CUDA when torch sees a GPU, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Asking for CUDA without a usable GPU is a
    `ConfigError` that says so (never a silent fall-back to the CPU)."""
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for, but torch sees no CUDA GPU (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                "use --device cpu or auto, or install a CUDA build of torch"
            )
        resolved = torch.device(name)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return resolved
    raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def to_device(x: Any, device: torch.device) -> Any:
    """A tensor, or a dict of tensors, on ``device`` (no copy when already there)."""
    if isinstance(x, Mapping):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)
