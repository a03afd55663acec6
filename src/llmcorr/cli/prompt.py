"""`llmcorr prompt preview`: the final messages of a prompt file, their token count and cost, without a call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from ..data import read_table
from ..errors import UserError
from ..prompts.env import env_policy, key_names
from ..prompts.preview import parse_inputs
from ..prompts.preview import preview as preview_prompt
from ..prompts.prompty import load_prompty
from ..runs.batch import parse_mapping, row_inputs
from ._common import AllowEnvOpt, ConfigOpt, EndpointOpt, console, load_config, parse_map_options

app = typer.Typer(help="Prompt files: preview what would be sent.", no_args_is_help=True)
_COLOURS = {"system": "magenta", "user": "cyan", "assistant": "green"}


@app.command("preview")
def preview(
    prompt_file: Annotated[Path, typer.Argument(help="a .prompty file")],
    inputs: Annotated[str | None, typer.Option(help='inputs as JSON, e.g. \'{"question": "…"}\'')] = None,
    data: Annotated[Path | None, typer.Option(help="take the inputs from a row of this data file")] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="input='${data.column}' when names differ (repeatable)")
    ] = None,
    row: Annotated[int, typer.Option(min=1, help="which row of --data (1 = the first)")] = 1,
    endpoint: EndpointOpt = None,
    config_path: ConfigOpt = None,
    allow_env: AllowEnvOpt = None,
) -> None:
    """Render the prompt with the file's sample (or --inputs / --data --row) and show the messages."""
    config = load_config(path=config_path)
    prompty = load_prompty(prompt_file, env=env_policy(allow_env or [], key_names(config)))
    values = dict(prompty.sample) if data is None else {}
    where: str | None = None  # the data row the inputs came from, for errors
    if data is not None:
        frame, at = read_table(data)
        if row > len(frame):
            raise UserError(f"--row {row}: {data} has {len(frame)} rows")
        columns = parse_mapping(parse_map_options(map_ or []), list(map(str, frame.columns)))
        values.update(row_inputs(frame.iloc[row - 1].to_dict(), columns))  # as `llmcorr run` takes the row
        where = f"{data}: {at(row - 1)}"
    if inputs is not None:
        values.update(parse_inputs(inputs))
    shown = preview_prompt(prompty, values, config.select(endpoint)[0], where)
    for m in shown.messages:
        console.print(Panel(m.content, title=m.role, title_align="left", border_style=_COLOURS[m.role]))
    console.print(shown.summary())
