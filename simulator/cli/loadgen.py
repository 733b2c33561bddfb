"""`kis loadgen` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="loadgen commands.", no_args_is_help=True)
