"""A batch run of a prompt file over a data table: each row's inputs → the rendered prompt → the LLM → `output`.

Inputs come from the row's columns of the same name, or from `--map name='${data.column}'`. Every row is rendered
before the first request, so a missing input is reported with its row number before any token is spent.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct.data import check_output_path, read_table, write_table
from ..errors import DataError, UserError
from ..prompts.prompty import Prompty, load_prompty
from ..providers import Provider
from ..store import Store
from .correction import make_scheduler
from .engine import WorkItem, execute_prompts, recorded
from .estimate import describe_estimate, estimate
from .progress import row_progress
from .spec import RunSpec, data_sha256

log = logging.getLogger("llmcorr")
_DATA_REF = re.compile(r"^\$\{data\.([^}]+)\}$")


@dataclass
class PromptRunResult:
    run_id: str
    table: pd.DataFrame
    input_tokens: int
    output_tokens: int
    wall_s: float


def parse_mapping(items: Mapping[str, str], columns: list[str]) -> dict[str, str]:
    """{input: "${data.column}"} → {input: column}; the column must exist."""
    mapping = {}
    for name, ref in items.items():
        match = _DATA_REF.match(ref.strip())
        if not match:
            raise UserError(f"--map {name}={ref!r}: expected {name}='${{data.COLUMN}}'")
        column = match.group(1)
        if column not in columns:
            raise DataError(f"--map {name}: the data has no column {column!r} (columns: {', '.join(columns)})")
        mapping[name] = column
    return mapping


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class PromptJob:
    def __init__(self, prompty: Prompty, frame: pd.DataFrame, mapping: dict[str, str], where: Any) -> None:
        self.prompty = prompty
        self.frame = frame
        self.mapping = mapping
        self.where = where

    def inputs(self, i: int) -> dict[str, Any]:
        row = self.frame.iloc[i]
        # an empty cell (a JSONL row without the key, a CSV blank) is a missing input, not the text "nan"
        values = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items() if not _blank(v)}
        values.update({name: values[column] for name, column in self.mapping.items() if column in values})
        return values

    def item(self, i: int) -> WorkItem:
        inputs = self.inputs(i)
        messages = self.prompty.render(inputs, where=f"data {self.where(i)}")
        return WorkItem(index=i, sample_id=str(i), inputs=inputs, messages=messages)

    def interpret(self, item: WorkItem, text: str) -> tuple[dict[str, Any], str | None]:
        return {"output": text}, None


async def run_prompt_async(
    prompt_file: str | Path,
    data: str | Path,
    *,
    mapping: Mapping[str, str] | None = None,
    output: str | Path | None = None,
    name: str | None = None,
    limit: int | None = None,
    endpoints: list[str] | None = None,
    provider: Provider | EndpointConfig | None = None,
    config: Config | None = None,
    cache: bool = True,
    progress: bool = False,
) -> PromptRunResult:
    """Run a prompt file over every row of a data file and record it as a run."""
    started = time.perf_counter()
    config = config or Config.load()
    prompty = load_prompty(prompt_file)
    frame, where = read_table(Path(data))
    if limit is not None:
        frame = frame.head(limit)
    if frame.empty:
        raise DataError(f"{data}: no rows")
    if output is not None:
        check_output_path(output)
    job = PromptJob(prompty, frame, parse_mapping(mapping or {}, list(map(str, frame.columns))), where)
    rendered = [job.item(i) for i in range(len(frame))]  # every row renders before anything is spent
    scheduler = make_scheduler(config, endpoints, provider)
    params = prompty.gen_params()
    planned = estimate((item.messages for item in rendered), scheduler, params.max_tokens)
    log.info("%s over %d rows of %s; estimate: %s", prompty.path.name, len(frame), data, describe_estimate(planned))
    spec = RunSpec(
        kind="prompt",
        data=str(data),
        data_sha256=data_sha256(data),
        template=str(prompty.path),
        template_sha256=prompty.template.sha256,
        endpoints=[e.provider.describe() | {"name": e.name} for e in scheduler.endpoints],
        params=params.to_dict(),
        options={"mapping": dict(mapping or {}), "limit": limit},
    )
    with Store(config.store_path) as store:
        store.check_name_free(name)
        run_id = store.create_run("prompt", spec.to_dict(), len(frame), name=name, estimate=planned.to_dict())
        async with recorded(store, run_id, scheduler):
            with row_progress(len(frame), f"running {run_id}", progress, scheduler) as on_row:
                await execute_prompts(job, rendered, scheduler, store, run_id, params, on_row, cache)
        store.finish_run(run_id, "completed", usage=scheduler.stats())
        rows = {r["row_index"]: r for r in store.rows(run_id)}
        record = store.get_run(run_id)
    table = frame.reset_index(drop=True).copy()
    table["output"] = [rows[i]["response"] if i in rows else None for i in range(len(table))]
    table["tokens"] = [
        (rows[i]["input_tokens"] or 0) + (rows[i]["output_tokens"] or 0) if i in rows else 0 for i in range(len(table))
    ]
    if output is not None:
        write_table(table, output)
    return PromptRunResult(run_id, table, record.input_tokens, record.output_tokens, time.perf_counter() - started)
