"""`llmcorr run FILE.prompty --data D`: a prompt file over every row of a data file, recorded as a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._sync import run_sync
from ..errors import UserError
from ..runs.prompt_run import run_prompt_async
from ..store import Store
from ._common import ConfigOpt, EndpointOpt, console, load_config, parse_map_options, setup_logging
from ._render import run_table


def run(
    flow: Annotated[Path, typer.Argument(help="a .prompty file")],
    data: Annotated[Path, typer.Option("--data", "-d", help="CSV, JSONL or Parquet rows to run over")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="rows + output (.csv/.jsonl/.parquet)")] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="input='${data.column}' when names differ (repeatable)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a name for the run")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N rows")] = None,
    endpoint: EndpointOpt = None,
    config_path: ConfigOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="call the LLM even when the answer is cached")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run a prompt file over a data file: each row's columns are the prompt's inputs; answers go to `output`."""
    setup_logging(quiet)
    if flow.suffix != ".prompty":
        raise UserError(f"{flow}: expected a .prompty file (Python flows are not supported yet)")
    mapping = parse_map_options(map_ or [])
    config = load_config(path=config_path)
    result = run_sync(
        run_prompt_async(
            flow,
            data,
            mapping=mapping,
            output=output,
            name=name,
            limit=limit,
            endpoints=endpoint,
            config=config,
            cache=not no_cache,
            progress=not quiet,
        )
    )
    with Store(config.store_path) as store:
        console.print(run_table(store.get_run(result.run_id), wall_s=result.wall_s))
    if output is not None:
        console.print(f"wrote {len(result.table)} rows to {output}")
