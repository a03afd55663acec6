"""`llmcorr run FLOW --data D`: a prompt file (.prompty) or a Python flow (module:name, file.py:name) over every row
of a data file, recorded as a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._sync import run_sync
from ..errors import UserError
from ..prompts.preview import parse_inputs
from ..runs.batch import run_batch_async
from ._common import (
    AllowEnvOpt,
    ConfigOpt,
    EndpointOpt,
    ExecutorOpt,
    NoCacheOpt,
    NoTraceOpt,
    OtlpOpt,
    RayAddressOpt,
    YesOpt,
    load_config,
    parse_map_options,
    parse_pairs,
    setup_logging,
)
from ._render import print_result
from .confirm import confirmer
from .progress import row_progress
from .run_file import read_run_file


def parse_init(init: str) -> dict[str, object]:
    """`--init`: a JSON object, or the name of a file holding one (Prompt flow's `--init init.json`)."""
    where, text, path = "--init", init, Path(init)
    if not init.lstrip().startswith("{") and (path.is_file() or path.suffix.lower() == ".json"):
        where = f"--init {init}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{where}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{where}: cannot be read ({type(exc).__name__}: {exc})") from None
    return parse_inputs(text, where, names="argument")


def run(
    flow: Annotated[
        str | None,
        typer.Argument(
            help="a .prompty file; a Python flow (module:function, file.py:Class); a Prompt flow folder "
            "(flow.dag.yaml or flow.flex.yaml) or its yaml file",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="CSV, JSONL or Parquet rows to run over (default: --run's)")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="rows + outputs (.csv/.jsonl/.parquet), written as rows finish"),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            "--column-mapping",
            help="input='${data.column}' or '${run.outputs.key}' when names differ (repeatable)",
        ),
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="a DAG flow's node variant, as pf: '${node.variant_1}'", show_default=False)
    ] = None,
    connection: Annotated[
        list[str] | None,
        typer.Option(help="a flow's connection NAME=ENDPOINT of llmcorr.toml (by default the endpoint of that name)"),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            help="a DAG flow node's NODE.KEY=VALUE, as pf's --connections: node.connection=NAME, node.deployment_name=…"
        ),
    ] = None,
    run_file: Annotated[
        Path | None, typer.Option("--file", help="a Prompt flow run file (run.yml): flow, data, column_mapping…")
    ] = None,
    upstream: Annotated[
        str | None, typer.Option("--run", help="chain on this run: its outputs by row, as ${run.outputs.KEY}")
    ] = None,
    resume_from: Annotated[
        str | None, typer.Option("--resume-from", help="reuse this run's finished rows (no token spent on them)")
    ] = None,
    init: Annotated[
        str | None, typer.Option(help="a class flow's constructor arguments: JSON, or a JSON file (init.json)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a name for the run")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N rows")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="for a Python flow's LLM calls")] = 256,
    endpoint: EndpointOpt = None,
    config_path: ConfigOpt = None,
    otlp: OtlpOpt = None,
    no_trace: NoTraceOpt = False,
    no_cache: NoCacheOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    allow_env: AllowEnvOpt = None,
    yes: YesOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run a prompt file or a Python flow over a data file; each row's columns are its inputs.

    Against a remote endpoint, a person at a terminal sees the estimate and is asked before anything is spent
    (--yes skips the question; a script, whose stdin is not a terminal, is never asked)."""
    setup_logging(quiet)
    arguments = parse_init(init) if init else None
    mapping = parse_map_options(map_ or [])
    overrides: dict[str, object] = dict(parse_pairs(override or [], "--override", "NODE.KEY=VALUE"))
    if run_file is not None:  # the file's options, under the command line's
        given = read_run_file(run_file)
        overrides = {**given.overrides(), **overrides}
        flow = flow or given.flow
        data = data or (Path(given.data) if given.data else None)
        mapping = {**given.column_mapping, **mapping}
        variant = variant or given.variant
        upstream = upstream or given.run
        arguments = arguments if arguments is not None else given.init
        name = name or given.name or given.display_name
    if flow is None:
        raise UserError("which flow? give FLOW (a .prompty file, a flow folder, module:function) or --file run.yml")
    config = load_config(path=config_path, otlp=otlp, no_trace=no_trace)
    result = run_sync(
        run_batch_async(
            flow,
            data,
            init=arguments,
            mapping=mapping,
            variant=variant,
            overrides=overrides,
            connections=parse_pairs(connection or [], "--connection", "NAME=ENDPOINT"),
            upstream=upstream,
            resume_from=resume_from,
            output=output,
            name=name,
            limit=limit,
            max_tokens=max_tokens,
            endpoints=endpoint,
            config=config,
            cache=not no_cache,
            progress=None if quiet else row_progress,
            executor=executor,
            ray_address=ray_address,
            confirm=confirmer(yes),
            allow_env=allow_env,
        )
    )
    print_result(config, result, output)
