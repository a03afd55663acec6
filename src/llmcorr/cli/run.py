"""`llmcorr run FLOW --data D`: a prompt file (.prompty) or a Python flow (module:name, file.py:name) over every row
of a data file, recorded as a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .._sync import run_sync
from ..errors import UserError
from ..runs.flows import run_flow_async
from ..runs.prompt_run import run_prompt_async
from ..store import Store
from ._common import ConfigOpt, EndpointOpt, console, load_config, parse_map_options, setup_logging
from ._render import run_table


def run(
    flow: Annotated[str, typer.Argument(help="a .prompty file, or a Python flow: module:function, file.py:Class")],
    data: Annotated[Path, typer.Option("--data", "-d", help="CSV, JSONL or Parquet rows to run over")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="rows + outputs (.csv/.jsonl/.parquet)")] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="input='${data.column}' when names differ (repeatable)")
    ] = None,
    init: Annotated[str | None, typer.Option(help="a class flow's constructor arguments, as JSON")] = None,
    name: Annotated[str | None, typer.Option(help="a name for the run")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N rows")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="for a Python flow's LLM calls")] = 256,
    endpoint: EndpointOpt = None,
    config_path: ConfigOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="call the LLM even when the answer is cached")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run a prompt file or a Python flow over a data file; each row's columns are its inputs."""
    setup_logging(quiet)
    mapping = parse_map_options(map_ or [])
    config = load_config(path=config_path)
    common: dict[str, Any] = {
        "mapping": mapping,
        "output": output,
        "name": name,
        "limit": limit,
        "endpoints": endpoint,
        "config": config,
        "cache": not no_cache,
        "progress": not quiet,
    }
    if flow.endswith(".prompty"):
        if init is not None:
            raise UserError("--init is for class flows, not .prompty files")
        result: Any = run_sync(run_prompt_async(flow, data, **common))
    else:
        try:
            arguments = json.loads(init) if init else None
        except json.JSONDecodeError as exc:
            raise UserError(f"--init: not valid JSON ({exc.msg} at column {exc.colno})") from None
        result = run_sync(run_flow_async(flow, data, init=arguments, max_tokens=max_tokens, **common))
    with Store(config.store_path) as store:
        console.print(run_table(store.get_run(result.run_id), wall_s=result.wall_s))
    if getattr(result, "metrics", None):
        console.print_json(json.dumps(result.metrics))
    if output is not None:
        console.print(f"wrote {len(result.table)} rows to {output}")
