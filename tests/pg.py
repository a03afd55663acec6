"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a throwaway cluster in a temp dir on
127.0.0.1 and a free port, started once per session; `postgres_url` is a fresh database in it for each test.

tests/conftest.py imports both fixtures, so any test can ask for them. Without PostgreSQL the tests skip, saying how
to install it (`make test` does, as root). PostgreSQL refuses to run as root: as root the cluster belongs to the
`postgres` user the package creates; otherwise to you.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

USER, PASSWORD = "llmcorr", "pg-secret-7Hq2"  # a password, so tests can check it is never shown or stored
INSTALL = "PostgreSQL is not installed: apt-get install postgresql (`make test` does it when run as root)"


def _bin() -> Path | None:
    """The newest Debian PostgreSQL's binaries, else those on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """postgresql://USER:PASSWORD@127.0.0.1:PORT (no database): a server for this session, stopped at the end."""
    bindir = _bin()
    if bindir is None:
        pytest.skip(INSTALL)
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="llmcorr-pg-"))
    if as_owner:
        shutil.chown(root, "postgres")
    data, pwfile, port = root / "data", root / "pw", _free_port()
    pwfile.write_text(PASSWORD)
    if as_owner:
        shutil.chown(pwfile, "postgres")
    initdb = [*as_owner, bindir / "initdb", "-D", data, "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8"]
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = [*as_owner, bindir / "pg_ctl", "-D", data, "-w"]
    try:
        _run([*initdb, "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"])
        _run([*pg_ctl, "-l", root / "log", "-o", options, "start"])
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            _run([*pg_ctl, "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[object]) -> None:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} failed:\n{done.stdout}{done.stderr}", pytrace=False)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A blank database of its own for one test: postgresql://USER:PASSWORD@127.0.0.1:PORT/NAME."""
    psycopg = pytest.importorskip("psycopg", reason="pip install 'llmcorr[postgres]'")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"
