"""`kis controller` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run the KIScaler controller.", no_args_is_help=True)
