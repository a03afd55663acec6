"""`llmcorr prompt preview`: the final messages of a prompt file, their token count and cost, without a call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from ..data import read_table
from ..errors import UserError
from ..prompts.prompty import load_prompty
from ..runs.batch import parse_mapping
from ..scheduler import build_endpoints
from ..scheduler.tokens import chat_prompt_tokens
from ._common import ConfigOpt, EndpointOpt, console, load_config, parse_map_options

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
) -> None:
    """Render the prompt with the file's sample (or --inputs / --data --row) and show the messages."""
    prompty = load_prompty(prompt_file)
    values = dict(prompty.sample) if data is None else {}
    if data is not None:
        frame, _ = read_table(data)
        if row > len(frame):
            raise UserError(f"--row {row}: {data} has {len(frame)} rows")
        values.update({str(k): v for k, v in frame.iloc[row - 1].items()})
        columns = parse_mapping(parse_map_options(map_ or []), list(values))
        values.update({name: values[column] for name, column in columns.items()})
    if inputs is not None:
        try:
            given = json.loads(inputs)
        except json.JSONDecodeError as exc:
            raise UserError(f"--inputs: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(given, dict):
            raise UserError("--inputs: expected a JSON object of input names to values")
        values.update(given)
    messages = prompty.render(values)
    config = load_config(path=config_path)
    endpoint_cfg = config.select(endpoint)[0]
    counter = build_endpoints([endpoint_cfg])[0].counter
    params = prompty.gen_params()
    tokens = chat_prompt_tokens(messages, counter)
    for m in messages:
        console.print(Panel(m.content, title=m.role, title_align="left", border_style=_COLOURS[m.role]))
    cost = endpoint_cfg.cost(tokens, params.max_tokens)
    console.print(
        f"{len(messages)} messages · {tokens:,} prompt tokens ({endpoint_cfg.name}) · up to {params.max_tokens:,} "
        f"completion tokens" + (f" · at most ${cost:.6f}" if cost is not None else "") + " · nothing was sent"
    )
