"""What every stage command shares: load validated params, pick the progress display, turn user errors
into one line + exit 2.

Usage: ``@stage_command`` on a typer command body; ``params = load(params_path)``
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from batchout import progress
from batchout.config import Params, load_params
from batchout.errors import BatchoutError

F = TypeVar("F", bound=Callable[..., Any])

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="params file (default: params.yaml)")
NAME_HELP = "an arm (a key of train.runs / train.tuned_runs), or one run <arm>-s<seed>"  # train and attack


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit; no traceback for a user's mistake."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def stage_command(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            progress.current()  # a bad BATCHOUT_PROGRESS(_INTERVAL) is refused before the stage writes anything
            return fn(*args, **kwargs)
        except BatchoutError as err:
            fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; rerun the same command to resume", 130)

    return wrapper  # type: ignore[return-value]


def load(path: Path) -> Params:
    return load_params(path)


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


def run_cli(target: Callable[..., Any] | typer.Typer) -> None:
    """Run a typer app or a single command so that usage errors (a bad option, a missing
    argument) are one line on stderr with exit code 2, like every other user error."""
    import click

    cmd = target if isinstance(target, typer.Typer) else _single(target)
    try:
        code = typer.main.get_command(cmd).main(standalone_mode=False, prog_name=_prog())
    except (click.exceptions.Abort, typer.Abort):
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except (click.ClickException, typer._click.exceptions.ClickException) as err:  # typer vendors click
        print(f"error: {' '.join(err.format_message().split())}", file=sys.stderr)
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _single(fn: Callable[..., Any]) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app


def _prog() -> str:
    name = Path(sys.argv[0]).name
    return "batchout" if name in ("batchout", "cli.py", "__main__.py") else name
