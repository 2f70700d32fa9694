"""The ``coe`` command line: one entry that registers each command group (``COMMANDS``, as vLLM's
CLI and Inspect's do). Commands are thin: build settings, call the SDK, print; shared options
live in ``orchestrator.cli.options``, and no command module imports another."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, NoReturn

import typer

from common.errors import CoeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="symbolic-coe: route questions to expert LLMs and aggregate their answers.",
)


def _print_version(asked: bool) -> None:
    if asked:
        from orchestrator.pools.settings import project_version

        print(f"coe {project_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """symbolic-coe: route questions to expert LLMs and aggregate their answers."""


COMMANDS = (
    "orchestrator.cli.ask",
    "orchestrator.cli.pools",
    "orchestrator.cli.evaluate",
    "orchestrator.cli.calibrate",
    "orchestrator.cli.serve",
    "orchestrator.cli.worker",
    "orchestrator.cli.view",
)
"""Each command group's module; it registers its commands (``register(app)``) and imports nothing
heavy until one of them runs."""

for _module in COMMANDS:
    importlib.import_module(_module).register(app)


def fail(message: str) -> NoReturn:
    """The one way the CLI reports bad input or a failure: one line, exit status 2."""
    print(f"coe: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors and the project's errors become one line on stderr, exit status 2."""
    try:
        from common import tracing

        tracing.configure()  # traces exported as the OTEL_* variables say; nothing when they say nothing
        code = app(args=argv, standalone_mode=False)
    except CoeError as exc:
        fail(str(exc))
    except (KeyboardInterrupt, typer.Abort):
        print("coe: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # typer vendors click privately: its usage errors (unknown option, missing argument, value
        # out of range) are recognised by click's exception interface, not by class
        message = getattr(exc, "format_message", None)
        if callable(message) and hasattr(exc, "exit_code"):
            if not message():  # no arguments at all: the help was printed
                sys.exit(exc.exit_code)
            context = getattr(exc, "ctx", None)
            where = f" (see '{context.command_path} --help')" if context is not None else ""
            fail(f"{message()}{where}")
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
