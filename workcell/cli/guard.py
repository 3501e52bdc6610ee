"""Every error a command meets ends as one message and an exit code, never a traceback.

``GuardedGroup`` is the click group behind the ``workcell`` command: each
sub-command (and sub-group, e.g. ``record``, ``release``) runs inside its
``invoke``, so one place decides how an error ends:

* exit 2, bad input: a ``WorkcellError`` (config, parameters, a refused plan), a
  pydantic ``ValidationError``, a path that cannot be read or written (``OSError``),
  a file that is not a workcell store;
* exit 1, a fault: anything else, named by its type, with the record telling what
  happened before it.

The first line of the message says what went wrong; a refusal lists its problems
on the lines below.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import TyperException

from workcell.errors import ProtocolRefused, WorkcellError

# typer vendors its own click; the installed click's exceptions pass through as well
_CLICK: tuple[type[BaseException], ...] = (click.exceptions.Exit, click.ClickException, click.Abort)
_PASS_THROUGH: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    TyperException,
    KeyboardInterrupt,
    *_CLICK,
)
BAD_INPUT = 2
FAULT = 1
MAX_MESSAGE = 2000

_err = Console(stderr=True, soft_wrap=True, highlight=False)


def report(message: str, code: int) -> typer.Exit:
    """Print ``message`` as the command's error and return the Exit to raise."""
    text = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " ..."
    _err.print(f"[bold red]error:[/] {text}", markup=True)
    return typer.Exit(code=code)


def _validation(err: ValidationError) -> str:
    lines = [
        f"  {'.'.join(str(p) for p in e['loc'])[:120] or '(top level)'}: {e['msg'][:300]}"
        for e in err.errors()[:20]
    ]
    return f"invalid {err.title} input:\n" + "\n".join(lines)


def classify(err: BaseException) -> tuple[str, int]:
    """The message and exit code for an error that reached the command line."""
    if isinstance(err, ProtocolRefused | WorkcellError):
        return str(err), BAD_INPUT
    if isinstance(err, ValidationError):
        return _validation(err), BAD_INPUT
    if isinstance(err, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({err.reason} at byte {err.start})", BAD_INPUT
    if isinstance(err, OSError):
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        return f"cannot use{where}: {err.strerror or err}", BAD_INPUT
    if isinstance(err, sqlite3.DatabaseError):
        return f"the run folder's store cannot be used: {err}", BAD_INPUT
    return f"failed: {type(err).__name__}: {err}", FAULT


class GuardedGroup(TyperGroup):
    """A typer group whose commands end every error as a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as err:  # noqa: BLE001 - the one place errors become exit codes
            message, code = classify(err)
            raise report(message, code) from None
