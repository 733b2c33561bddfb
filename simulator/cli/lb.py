"""`kis lb` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="lb commands.", no_args_is_help=True)
