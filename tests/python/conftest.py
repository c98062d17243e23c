from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))
# no background gc in the loops the tests start (retention's tests ask for one)
os.environ.setdefault("HARNESS_GC_INTERVAL_S", "0")
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"


def _children() -> set[int]:
    me = str(os.getpid())
    kids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[1].decode() == me and fields[0] != b"Z":
            kids.add(int(entry))
    return kids


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails a test that leaves a thread or a child process behind."""
    threads_before = set(threading.enumerate())
    kids_before = _children()
    yield
    leaked_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    leaked_kids = _children() - kids_before
    assert not leaked_threads, f"leaked threads: {leaked_threads}"
    assert not leaked_kids, f"leaked child processes: {leaked_kids}"


@pytest.fixture
def reference() -> Path:
    return REFERENCE


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server for the session: HARNESS_TEST_DATABASE_URL's, else a private
    cluster (tests/pg_cluster.sh) started now and stopped at the end."""
    given = os.environ.get("HARNESS_TEST_DATABASE_URL")
    if given:
        yield given
        return
    base = Path(tempfile.mkdtemp(prefix="harness-pg.", dir="/tmp"))
    base.chmod(0o755)  # the cluster runs as the user postgres when the tests run as root
    script = ROOT / "tests" / "pg_cluster.sh"
    try:
        url = subprocess.run([str(script), "start", str(base / "pg")], check=True, capture_output=True,
                             text=True).stdout.strip()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"the tests' PostgreSQL cluster did not start: {exc.stderr.strip()}")
    try:
        yield url
    finally:
        subprocess.run([str(script), "stop", str(base / "pg")], check=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_schema(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A schema of this test's own, named in HARNESS_DATABASE_URL's search_path, so
    that STORE=postgres starts on an empty database; dropped afterwards."""
    from harness.store.postgres import drop_schema
    from psycopg import conninfo

    schema = f"t_{secrets.token_hex(6)}"
    monkeypatch.setenv("HARNESS_DATABASE_URL", conninfo.make_conninfo(pg_url, options=f"-csearch_path={schema}"))
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]  # a name made above, never input
    yield schema
    drop_schema(pg_url, schema)


@pytest.fixture(params=["files", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """An empty store of each backend (lib/harness/store/__init__.py BACKENDS); postgres
    on a schema of the test's own."""
    from harness import store as store_mod

    assert request.param in store_mod.BACKENDS
    if request.param == "postgres":
        request.getfixturevalue("pg_schema")
    s = store_mod.open_store(tmp_path, request.param)
    store_mod.name_store(tmp_path, request.param)  # what opens the directory again finds this backend
    s.init()
    yield s
