"""No traceback reaches a user: every error of a command becomes one line on stderr.

Exit codes: 2 for usage (bad options, impossible parameters, an input path that does not
exist), 1 for data errors (a file that exists but cannot be used, a store another run
writes, an output folder that cannot be written) and for unexpected failures, which say
how to get the traceback (``MMHE_DEBUG=1``). `install` wraps every command of the app,
so the console script, ``python -m`` and Typer's test runner behave alike.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from mmhe.errors import ConfigError, InputFileError, MMHEError

USAGE, DATA = 2, 1

# Typer >= 0.29 carries its own copy of click: usage errors of either kind pass through.
_CLICK_ERRORS = tuple(
    {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
    | {click.exceptions.ClickException}
)


_ABORTS = (typer.Abort, click.exceptions.Abort)


def exit_code(exc: BaseException) -> int:
    """2 for usage errors, 1 for data errors (see the module docstring)."""
    if isinstance(exc, ConfigError):
        return USAGE
    if isinstance(exc, InputFileError) and not exc.path.exists():
        return USAGE
    return DATA


def describe(exc: BaseException) -> str:
    """One line saying what went wrong and what to do."""
    if isinstance(exc, MMHEError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return (
            f"cannot write or read {exc.filename or ''}: permission denied "
            "(choose a folder you may write to, or fix its permissions)"
        )
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc} (check the path and the free disk space)"
    return (
        f"unexpected {type(exc).__name__}: {exc} - this is a bug in mmhe; please report it "
        "(run again with MMHE_DEBUG=1 to see the traceback)"
    )


def say(exc: BaseException) -> int:
    """Print `exc` as one line on stderr; returns its exit code."""
    text = " ".join(describe(exc).split())
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {text}", highlight=False)
    return exit_code(exc) if isinstance(exc, MMHEError) else DATA


def clean_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: errors become one line and an exit code (``MMHE_DEBUG=1`` re-raises)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, *_CLICK_ERRORS):
            raise
        except KeyboardInterrupt:
            Console(stderr=True).print("interrupted: finished pieces are kept; run again to resume")
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("MMHE_DEBUG"):
                raise
            raise typer.Exit(say(exc)) from None

    return wrapper


def install(app: typer.Typer) -> None:
    """Wrap every command of `app` and of its sub-apps with `clean_errors` (once)."""
    for info in app.registered_commands:
        if info.callback is not None and not getattr(info.callback, "_mmhe_clean", False):
            info.callback = clean_errors(info.callback)
            info.callback._mmhe_clean = True  # type: ignore[attr-defined]
    for group in app.registered_groups:
        if group.typer_instance is not None:
            install(group.typer_instance)


def run_with_clean_errors(app: typer.Typer) -> None:
    """Run the app; anything that escapes the commands still becomes one line."""
    try:
        app(standalone_mode=True)
    except MMHEError as exc:
        sys.exit(say(exc))
    except Exception as exc:
        if os.environ.get("MMHE_DEBUG"):
            raise
        sys.exit(say(exc))


class OneLineErrorGroup(TyperGroup):
    """The root command group: usage errors (bad option values, unknown options, missing
    arguments) print one line naming the option and pointing to ``--help``, instead of
    Typer's multi-line box; exit code 2 as click gives them."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_ERRORS as exc:
            context = getattr(exc, "ctx", None)
            where = f" (`{context.command_path} --help` lists the options)" if context else ""
            message = exc.format_message().strip()
            if not message:  # no arguments: the help was printed, nothing to add
                sys.exit(getattr(exc, "exit_code", USAGE))
            text = " ".join(f"{message}{where}".split())
            Console(stderr=True, soft_wrap=True).print(
                f"[bold red]error:[/] {text}", highlight=False
            )
            sys.exit(getattr(exc, "exit_code", USAGE))
        except _ABORTS:
            Console(stderr=True).print("aborted")
            sys.exit(DATA)
        sys.exit(code if isinstance(code, int) else 0)
