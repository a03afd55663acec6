"""Before a run spends on a remote endpoint: its estimate, and a question to a person at a terminal — never to a
script or CI (stdin not a terminal), and never with --yes. Shared by `correct`, `run` and `demo`."""

from __future__ import annotations

import sys

from ..runs.estimate import Estimate
from ..runs.spec import ConfirmFn
from ..scheduler import Scheduler
from ._common import confirm, err_console
from ._render import estimate_table


def confirmer(yes: bool) -> ConfirmFn:
    """The `confirm` hook of a run: True (go) unless a person at a terminal says no to spending on a remote
    endpoint."""

    def ask(planned: Estimate | None, scheduler: Scheduler) -> bool:
        remote = any(e.config.provider_kind.remote for e in scheduler.endpoints)
        if yes or not remote or not sys.stdin.isatty():
            return True
        if planned is not None:
            err_console.print(estimate_table(planned))
        else:
            err_console.print("no estimate: a flow's LLM calls are not known before it runs", markup=False)
        return confirm("start the run?", yes)

    return ask
