"""`kis stub` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="stub commands.", no_args_is_help=True)
