"""Option values checked at the edge: choices, ranges, schedulers, output folders.

Each check raises `typer.BadParameter` (exit code 2, one line naming the option) or
`ConfigError`, before any work starts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import typer
from pydantic import ValidationError

from mmhe.errors import ConfigError


def choice(value: str, choices: Iterable[str], option: str) -> str:
    """`value` if it is one of `choices`, else BadParameter listing them."""
    allowed = list(choices)
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=option)
    return value


def choices(values: Iterable[str], allowed: Iterable[str], option: str) -> tuple[str, ...]:
    """Every value (comma-separated lists split) checked against `allowed`."""
    allowed = list(allowed)
    out = tuple(v.strip() for value in values for v in str(value).split(",") if v.strip())
    if not out:
        raise typer.BadParameter("give at least one value", param_hint=option)
    for value in out:
        choice(value, allowed, option)
    return out


def at_least(value: float | int | None, low: float, option: str) -> None:
    if value is not None and value < low:
        raise typer.BadParameter(f"{value} is below the minimum {low}", param_hint=option)


def scheduler(value: str | None) -> str | None:
    """``auto`` (or nothing) -> None (`mmhe.parallel.choose_scheduler` decides); ``local``
    (a local Dask cluster, dashboard off); ``sync``; or a scheduler address
    ``tcp://host:port``."""
    if value is None or value == "auto":
        return None
    if value in ("local", "sync") or "://" in value or ":" in value:
        return value
    raise typer.BadParameter(
        f"{value!r} is neither 'auto', 'local', 'sync' nor a scheduler address such as "
        "tcp://host:8786",
        param_hint="--scheduler",
    )


def config_from(model, options: dict[str, str], **values):
    """Build a pydantic config, turning a validation error into one BadParameter line that
    names the option of each bad field (`options`: field name -> option)."""
    try:
        return model(**values)
    except ValidationError as exc:
        errors = exc.errors()
        fields = [str(e["loc"][0]) if e["loc"] else "" for e in errors]
        problems = "; ".join(
            f"{options.get(f, f)} {values.get(f)!r}: {e['msg']}"
            for f, e in zip(fields, errors, strict=True)
        )
        raise typer.BadParameter(problems) from None


def output_folder(path: Path, *, option: str = "--out", inputs: Iterable[Path] = ()) -> Path:
    """A folder the command may create and write: not the current directory, not an input
    (nor inside one), and writable (checked with a probe file, removed at once)."""
    resolved = path.resolve()
    if resolved == Path.cwd().resolve() or str(path).strip() in {"", "."}:
        raise typer.BadParameter(
            f"{str(path)!r} is the current directory; give a folder of its own for the output",
            param_hint=option,
        )
    for source in inputs:
        source = Path(source).resolve()
        if resolved == source or source in resolved.parents:
            raise typer.BadParameter(
                f"{path} lies inside the input {source}; write the output elsewhere",
                param_hint=option,
            )
    if resolved.exists() and not resolved.is_dir():
        raise typer.BadParameter(f"{path} exists and is not a folder", param_hint=option)
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        probe = resolved / f".mmhe-write-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot write there ({exc.strerror or exc}); choose a folder "
            "you may write to"
        ) from None
    if not os.access(resolved, os.W_OK):
        raise ConfigError(f"{option} {path}: not writable; choose a folder you may write to")
    return path
