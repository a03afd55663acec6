"""Peer tools driven against the quota emulator by bench/quota.py, one small module each.

Each module has one function, ``run(base_urls, scenario) -> Result``: send ``scenario["requests"]`` copies of the
same chat request to the endpoints (``base_urls`` are OpenAI-style ``http://127.0.0.1:PORT/v1`` URLs, one per
endpoint, in the order of ``scenario["endpoints"]``) the way that tool would, and say how it went. The server's own
counters are the measurement; a runner's result only adds what the client saw (completions, failures, wall time).

Runners run in a child process (``python -m bench.peers TOOL``, the work as JSON on stdin, the result as JSON on the
last line of stdout), so that the emulator in the parent process never shares a GIL with the client under test and
so that tools whose packages live only in the peers virtualenv (bench/.venv-peers) never meet llmcorr's. Modules that
need such packages import them inside their functions; ``common`` is standard library only.
"""
