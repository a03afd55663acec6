"""Prompt flow's names without Prompt flow: flows written for `promptflow` run unchanged on llmcorr.

    with promptflow_names():                 # llmcorr enters it while a flow loads and while its rows run
        from promptflow.core import Prompty, tool, log_metric
        from promptflow.tracing import trace
        from promptflow.connections import AzureOpenAIConnection

    hook.py         the import hook: the stand-in modules while the block is open, nothing left after it
    core.py         tool, ToolProvider, log_metric, the model configurations
    prompty.py      Prompty, AsyncPrompty: llmcorr's prompty loader, asked through llmcorr.chat/achat
    connections.py  the connections, built from llmcorr.toml endpoints
    tracing.py      trace (llmcorr's), start_trace (nothing to start), ThreadPoolExecutorWithContext

Installed, the real promptflow is used instead (the hook does nothing).
"""

from .hook import NotOffered, NotSupplied, promptflow_names, real_promptflow

__all__ = ["NotOffered", "NotSupplied", "promptflow_names", "real_promptflow"]
