"""Where a run's rows are processed: here (`local`, engine.execute) or on a Ray cluster (`ray`, ray_executor.py).

Both take the same work items and commit the same rows, and stop the same way (engine.StopWatch: Ctrl-C, SIGTERM,
`runs cancel`; the rows already started are drained and kept). Any run kind runs on either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..errors import UserError
from .engine import ProgressFn, execute, request_timeout
from .ray_executor import check_endpoints, execute_ray, ray_available

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..store import Store
    from .engine import WorkItem
    from .kinds import Plan
    from .llm import CachedLLM


class Executor(Protocol):
    name: str

    def check(self, plan: Plan) -> None:
        """Fail before anything is recorded if this executor cannot run the plan."""
        ...

    async def run(
        self,
        plan: Plan,
        items: Iterable[WorkItem],
        store: Store,
        run_id: str,
        llm: CachedLLM,
        width: int,
        on_row: ProgressFn | None,
    ) -> None:
        """Process every item into the run's rows, committing them as they finish."""
        ...


class LocalExecutor:
    """This process's event loop, `width` rows at a time."""

    name = "local"

    def check(self, plan: Plan) -> None:
        pass

    async def run(
        self,
        plan: Plan,
        items: Iterable[WorkItem],
        store: Store,
        run_id: str,
        llm: CachedLLM,
        width: int,
        on_row: ProgressFn | None,
    ) -> None:
        timeout = request_timeout(plan.scheduler)
        await execute(items, plan.processor(llm), store, run_id, width, on_row, timeout)


class RayExecutor:
    """Rows in chunks over a Ray cluster at `address` (default: a local instance started for the run)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def check(self, plan: Plan) -> None:
        check_endpoints(plan.scheduler)

    async def run(
        self,
        plan: Plan,
        items: Iterable[WorkItem],
        store: Store,
        run_id: str,
        llm: CachedLLM,
        width: int,
        on_row: ProgressFn | None,
    ) -> None:
        recipe = plan.recipe(store, llm.use_cache, width)
        timeout = request_timeout(plan.scheduler)
        await execute_ray(items, recipe, store, run_id, plan.scheduler, on_row, timeout, address=self.address)


EXECUTORS = ("local", "ray")


def make_executor(name: str, ray_address: str | None = None) -> Executor:
    """The executor called `name`; one line for an unknown one, or for Ray when it is not installed."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        ray_available()  # before anything is planned or recorded
        return RayExecutor(ray_address)
    raise UserError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
