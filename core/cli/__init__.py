"""The `dp` command line: a thin skin over the library.

Each command parses flags, builds a settings object, calls one library function
and prints a table or `--json`. Commands live in `dp.cli.*` modules, one per
stage; heavy imports happen inside the commands so `dp --help` stays fast.
Errors: a `DPError` (or any unexpected exception) prints one line `error: ...`
and exits non-zero; set DP_DEBUG=1 for the traceback. SIGINT and SIGTERM print
`error: interrupted` and exit 130 / 143 (`dp.interrupts`).
"""

from __future__ import annotations

import os

import click

from dp import __version__
from dp.errors import DPError
from dp.interrupts import exit_code, handle_signals, interrupted


class DPGroup(click.Group):
    """A click group that turns every error into one line on stderr and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            with handle_signals():
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            raise SystemExit(exit_code()) from None
        except click.ClickException as e:  # usage errors: one line, with where to look
            hint = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            raise SystemExit(e.exit_code) from None
        raise SystemExit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # noqa: BLE001 - last line of defence: no tracebacks for users
            if interrupted():  # a library may raise its own error in place of the interrupt it caught
                click.echo("error: interrupted", err=True)
                ctx.exit(exit_code())
            if isinstance(e, DPError):
                click.echo(f"error: {e}", err=True)
                ctx.exit(e.exit_code)
            if os.environ.get("DP_DEBUG"):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(f"error: {type(e).__name__}: {first} (DP_DEBUG=1 shows the traceback)", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(exit_code())


@click.group(cls=DPGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dp")
def cli() -> None:
    """dp: DeepPrune reproduced - sample traces once, replay any pruning policy on them."""


def _register() -> None:
    import importlib

    for mod in ("cache", "generate", "judge", "simulate", "live", "figures", "serve", "frontier"):
        try:
            m = importlib.import_module(f"dp.cli.{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"dp.cli.{mod}":
                continue  # that stage is not there yet
            raise
        for command in m.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dp` script."""
    cli.main(args=argv, prog_name="dp")


if __name__ == "__main__":
    main()
