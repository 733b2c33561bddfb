"""``kis obs``: the observation schema that learned policies are trained and served with."""

from __future__ import annotations

import typer
from rich.table import Table

from simulator.cli.common import console, print_json

app = typer.Typer(help="The observation schema of learned policies.", no_args_is_help=True)


@app.command("schema")
def schema_command(as_json: bool = typer.Option(False, "--json", help="Print the schema as an artifact records it.")) -> None:
    """Print the live observation schema: index, feature, unit, normalisation, the signals it reads."""
    from controller.observation import CLIP, SCHEMA_VERSION, schema_description

    schema = schema_description()
    if as_json:
        print_json(schema)
        return
    table = Table(title=f"{SCHEMA_VERSION}: value -> clip((value - offset) / scale, +-{CLIP:g})")
    for column, justify in (("#", "right"), ("feature", "left"), ("unit", "left"), ("scale", "right"), ("meaning", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for f in schema["features"]:
        table.add_row(str(f["index"]), f["name"], f["unit"], f"{f['scale']:g}", f["help"])
    console.print(table)
