"""The PostgreSQL backend (STORE=postgres, DATABASE_URL): one queue for a fleet.

Several hosts, each with its own state directory (its sessions, its audit log, its
git clone), share one database: the items, their leases, the attempts, the audit
rows, the pause, the breaker and the hosts. It is the SQLite store's SQL (the same
tables and statements, `?` marks turned into psycopg's) with what a server adds:

- A claim is `SELECT ... FOR UPDATE SKIP LOCKED`: claimers on any host never wait
  for one another's row, and never take the same one.
- A lease has an expiry (`LEASE_S`, in the column lease_expires); the loop renews the
  leases of its host at every heartbeat (beat()). An item whose lease has expired
  (its host died, hung or lost the network) is claimable again: the claim takes it
  over with the next fencing token, and says so (item.taken_over). Any later write
  of the old holder presents a stale token and is refused (FencedError): its result
  becomes an orphaned attempt, never the item's outcome.
- live() is this host's leases only; hosts() is the fleet (each loop's heartbeat).
- `FLEET_JOBS` caps the sessions running across the fleet: a claim takes a
  transaction-scoped advisory lock and counts the unexpired leases first.
- The pause, the breaker and the audit index are changed under advisory locks of
  their own (_serialize), not under one lock of the whole database.
- The connection: a lost one is said in one line (StoreUnavailableError) and made
  again at the next call; the loop stops claiming while the database is down.

The URL comes from the environment only (HARNESS_DATABASE_URL, the configuration's
DATABASE_URL), never from a file, and is never written anywhere: it may hold a
password. Messages name the database by host and name alone (where()).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

from harness import jsonio
from harness.store import queue
from harness.store.base import FleetFullError, Lease, StoreDownError, StoreError, StoreUnavailableError, host_name
from harness.store.files import this_host
from harness.store.shared import PgShared
from harness.store.sqlite import ITEM_COLUMNS, SqliteStore, candidate, row_values, upsert

URL_ENV = "HARNESS_DATABASE_URL"
LEASE_ENV = "HARNESS_LEASE_S"
FLEET_ENV = "HARNESS_FLEET_JOBS"
LEASE_S = 120.0
CONNECT_TIMEOUT_S = 5
IDLE_TX_TIMEOUT_MS = 5000  # a transaction of ours takes milliseconds; one idle this long belongs to a stopped host
# One step per version (the schema_version table): the SQLite store's tables at its
# version 3, the lease's host and expiry beside them, and the hosts.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE items (
        id TEXT PRIMARY KEY, state TEXT NOT NULL, rank INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL,
        not_before DOUBLE PRECISION NOT NULL DEFAULT 0, fixing INTEGER NOT NULL DEFAULT 0,
        lease_session TEXT, lease_token BIGINT, run TEXT, deps TEXT, doc TEXT NOT NULL,
        lease_host TEXT, lease_expires DOUBLE PRECISION
    );
    CREATE INDEX items_claim ON items (state, fixing DESC, rank, created, id);
    CREATE INDEX items_run ON items (run);
    CREATE INDEX items_lease_host ON items (lease_host) WHERE state = 'running';
    CREATE TABLE audit (n BIGSERIAL PRIMARY KEY, event TEXT NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE kv (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE attempts (
        session_id TEXT PRIMARY KEY, item_id TEXT, run TEXT, attempt INTEGER, verdict TEXT, model TEXT,
        started DOUBLE PRECISION, ended DOUBLE PRECISION, wall_s DOUBLE PRECISION, ttft_s DOUBLE PRECISION,
        turns INTEGER, cost_usd DOUBLE PRECISION, cost_estimated INTEGER, input BIGINT, output BIGINT,
        cache_read BIGINT, cache_write BIGINT, fix_round INTEGER, verify_s DOUBLE PRECISION,
        claim_s DOUBLE PRECISION, retries TEXT
    );
    CREATE INDEX attempts_started ON attempts (started);
    CREATE INDEX attempts_item ON attempts (item_id);
    CREATE INDEX attempts_run ON attempts (run);
    CREATE TABLE receipts (session_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE hosts (name TEXT PRIMARY KEY, heartbeat DOUBLE PRECISION NOT NULL, doc TEXT NOT NULL);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
PG_ITEM_COLUMNS = ITEM_COLUMNS + ", lease_host, lease_expires"
PG_ITEM_PUT = upsert("items", PG_ITEM_COLUMNS, "id")
HOST_PUT = upsert("hosts", "name, heartbeat, doc", "name")
LOCK_SPACE = 0x4841524E  # "HARN": the advisory locks' first key
# Which fix rounds this host may claim: its own, one of no host's, and one whose host
# has not beaten for LEASE_S (gone: its round is taken by whoever can; start.py then
# begins a new conversation, as the old one is out of reach).
FIX_ROUTE = ("(i.fixing = 0 OR COALESCE(i.doc::jsonb -> 'fix' ->> 'host', %(me)s) = %(me)s OR NOT EXISTS ("
             "SELECT 1 FROM hosts h WHERE h.name = i.doc::jsonb -> 'fix' ->> 'host' "
             "AND h.heartbeat >= %(now)s - %(lease)s))")  # (i: the items row; hosts has a doc of its own)


# An item that may be claimed now (i: the items row): pending and due, or running on a
# lease that has expired; a fix round routed to its host (FIX_ROUTE); its dependencies done.
READY = (
    "((i.state = 'pending' AND i.not_before <= %(now)s) OR (i.state = 'running' AND i.lease_expires < %(now)s)) "
    f"AND {FIX_ROUTE} "
    "AND NOT (COALESCE(i.run, '') = ANY(%(skip)s::text[])) "  # runs over their budget
    "AND (i.deps IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(i.deps::jsonb) AS d(id) "
    "  WHERE NOT EXISTS (SELECT 1 FROM items s WHERE s.id = d.id AND s.state = 'succeeded')))")
ITEM_FIELDS = "i.id, i.rank, i.created, i.not_before, i.deps, i.fixing, i.state, i.doc, i.run"
# Every claimable row in claim order ({rank}: the rank, or the rank with ageing): exact, and
# its cost grows with the claimable rows.
READY_SORTED = (f"SELECT {ITEM_FIELDS} FROM items i WHERE {READY} "
                "ORDER BY i.fixing DESC, {rank}, i.created, i.id LIMIT 1")
# The head of each class (fixing, rank) of pending items, read from items_claim, and the expired
# leases; the best of them names the class whose first claimable row (index order) is taken.
_CLASSES = ", ".join(f"('pending', {f}, {r})" for f in (1, 0) for r in range(len(queue.PRIORITIES)))
CLASS_HEADS = (
    "WITH heads AS (SELECT h.* FROM (VALUES " + _CLASSES + ") AS k(state, fixing, rank) CROSS JOIN LATERAL ("
    f"  SELECT i.state, i.fixing, i.rank, i.created, i.id FROM items i WHERE i.state = k.state "
    f"  AND i.fixing = k.fixing AND i.rank = k.rank AND {READY} ORDER BY i.created, i.id LIMIT 1) h "
    f"UNION ALL SELECT i.state, i.fixing, i.rank, i.created, i.id FROM items i "
    f"WHERE i.state = 'running' AND {READY}), "
    "best AS (SELECT state, fixing, rank FROM heads ORDER BY fixing DESC, {rank}, created, id LIMIT 1) "
    f"SELECT {ITEM_FIELDS} FROM items i WHERE i.state = (SELECT state FROM best) "
    f"AND i.fixing = (SELECT fixing FROM best) AND i.rank = (SELECT rank FROM best) AND {READY} "
    "ORDER BY i.created, i.id LIMIT 1")


def where(url: str) -> str:
    """The database as a message may name it: host and name, never user or password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the database (DATABASE_URL does not parse)"
    return f"database {info.get('dbname') or '?'} on {info.get('host') or 'localhost'}"


class PgDb:
    """psycopg's connection as the SQLite store's SQL expects it: execute() with `?`
    marks, answering a cursor; made again after a loss, at the next call."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None
        self.connect()

    def connect(self) -> psycopg.Connection[Any]:
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        try:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                        application_name="harness")
            # a host stopped inside a transaction (SIGSTOP, a hung VM) must not hold its row
            # locks for good: the server ends such a session, and its leases can run out
            self.conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_TX_TIMEOUT_MS}")
            # a claim's plan is cheap to run and dear to compile: past ~10,000 claimable
            # items the JIT would take 35-45 ms of each claim (docs/scaling.md)
            self.conn.execute("SET jit = off")
        except psycopg.Error as exc:
            raise StoreDownError(f"{where(self.url)} is unreachable: {_first_line(exc)}") from None
        return self.conn

    def execute(self, statement: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            return self.connect().execute(statement.replace("?", "%s"), tuple(params))
        except psycopg.OperationalError as exc:
            raise StoreDownError(f"{where(self.url)}: {_first_line(exc)}") from None
        except psycopg.DatabaseError as exc:  # what the store's own checks did not foresee: one line
            raise StoreUnavailableError(f"{where(self.url)} refused a statement: {_first_line(exc)}") from None

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            with self.connect().cursor() as cur:
                cur.executemany(statement.replace("?", "%s"), rows)
        except psycopg.OperationalError as exc:
            raise StoreDownError(f"{where(self.url)}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass
class PostgresStore(PgShared, SqliteStore):
    """The Store protocol on PostgreSQL, for one host of a fleet (this module's docstring)."""

    shared = True  # several hosts use it: each reconciles its own leases only

    def __post_init__(self) -> None:  # the SQLite store's file, never made: the database is elsewhere
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        url = os.environ.get(URL_ENV, "")
        if not url:
            raise StoreUnavailableError(f"{self.state_dir} uses the postgres store, and DATABASE_URL is not set")
        self.host = host_name()
        self.lease_s = float(os.environ.get(LEASE_ENV) or LEASE_S)
        self.fleet_jobs = int(os.environ.get(FLEET_ENV) or 0)
        self.path = Path(where(url))  # what messages name (SqliteDb's are about its file)
        self.pg = PgDb(url)
        self.db = self.pg  # type: ignore[assignment]
        self._migrate()

    def _migrate(self) -> None:
        with self._tx():
            self.db.execute("SELECT pg_advisory_xact_lock(?, 0)", (LOCK_SPACE,))
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise StoreUnavailableError(f"{self.path} has schema {version}; this release knows up to "
                                            f"{SCHEMA_VERSION}: run a newer harness")
            for step in MIGRATIONS[version:]:
                self.pg.connect().execute(step)
            if version < SCHEMA_VERSION:
                self.db.execute("DELETE FROM schema_version")
                self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def _locked(self, step: Callable[[], Any]) -> Any:
        return step()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        conn = self.pg.connect()
        try:
            with conn.transaction():
                yield self.db
        except psycopg.OperationalError as exc:
            raise StoreDownError(f"{self.path}: {_first_line(exc)}") from None

    def _serialize(self, what: str) -> None:
        self.db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (LOCK_SPACE, what))

    def _audit_key(self) -> str:
        return f"audit_index:{self.host}:{self.state_dir.resolve()}"

    def reindex(self) -> dict[str, int]:
        """Refused: the attempts and the audit rows are every host's, and the files
        that would rebuild them are each on its own host."""
        raise StoreError("reindex rebuilds a store from this host's files; a postgres store holds every host's "
                         "attempts and audit rows, so it is not rebuilt from one host (nothing was changed)")

    def rollup(self, by: str, since: float | None = None, run: str | None = None) -> dict[str, Any]:
        from harness.report import rollup

        return rollup.rollup(self.attempts(since=since, run=run), by)

    # --- items: a row lock for every read-modify-write, the lease's host and expiry ---

    def _load(self, item_id: str) -> tuple[str, dict[str, Any]] | None:
        row = self.db.execute("SELECT state, doc FROM items WHERE id = ? FOR UPDATE", (item_id,)).fetchone()
        return (row[0], jsonio.loads(row[1])) if row else None

    def _put(self, item: dict[str, Any]) -> None:
        lease = item["lease"] if isinstance(item.get("lease"), dict) else {}
        self.db.execute(PG_ITEM_PUT, (*row_values(item), lease.get("host"), lease.get("expires_epoch")))

    def claim(self, session_id: str, worker: str, now: float, admit: Callable[[], bool] | None = None,
              aging_s: float = 0.0, skip_runs: frozenset[str] = frozenset()) -> Lease | None:
        if admit is not None and (self._ready(now, aging_s, skip_runs=skip_runs) is None or not admit()):
            return None
        with self._tx():
            if self.fleet_jobs > 0 and self._fleet_full(now):
                raise FleetFullError(f"FLEET_JOBS={self.fleet_jobs} sessions run across the fleet already")
            # this statement's generic plan costs half the server's CPU of a custom one, which
            # is planned again at every claim; its shape is fixed, so the generic plan is as good
            self.db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            row = self._claimable(now, aging_s, lock=True, skip_runs=skip_runs)
            if row is None:
                return None
            c, state, item = self._candidate(row), row[6], jsonio.loads(row[7])
            before = item.get("lease") if state == "running" else None
            item["state"] = "running"
            item["claims"] = int(item.get("claims") or 0) + 1
            item["lease"] = {"session_id": session_id, "token": item["claims"], "worker": worker, "host": self.host,
                             "pid": os.getppid(), "claimed_at": jsonio.utc_now_iso(),
                             "expires_epoch": round(now + self.lease_s, 3)}
            item["updated_at"] = item["lease"]["claimed_at"]
            self._put(item)
        if isinstance(before, dict):
            self.audit("item.taken_over", item=c.item_id, session=session_id, token=item["claims"],
                       from_session=before.get("session_id"), from_host=before.get("host"),
                       from_token=before.get("token"), lease_expired=before.get("expires_epoch"))
        self._touch_lease(session_id)
        return Lease(c.item_id, session_id, item["claims"], worker, item)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """A lock of the fleet's, held while the block runs (a session-level advisory
        lock: a host that dies lets go of it with its connection)."""
        key = (LOCK_SPACE, name)
        row = self.db.execute("SELECT pg_try_advisory_lock(?, hashtext(?))", key).fetchone()
        got = bool(row and row[0])
        try:
            yield got
        finally:
            if got:
                with suppress(StoreDownError):  # a lost connection has let go of it already
                    self.db.execute("SELECT pg_advisory_unlock(?, hashtext(?))", key)

    def _fleet_full(self, now: float) -> bool:
        self._serialize("fleet_jobs")
        row = self.db.execute("SELECT count(*) FROM items WHERE state = 'running' AND lease_expires >= ?",
                              (now,)).fetchone()
        return bool(row and int(row[0]) >= self.fleet_jobs)

    def _ready(self, now: float, aging_s: float, lock: bool = False,  # type: ignore[override]
               skip_runs: frozenset[str] = frozenset()) -> queue.Candidate | None:
        """The best item that may run now: pending, not held back, its dependencies
        done; or running on a lease that has expired. With lock, the row is locked,
        and rows other claimers hold are skipped.

        Ageing makes an item's rank a function of now, which no index orders; but
        within one class (fixing, rank) the oldest item has the lowest effective rank,
        so the best item is the head of one of the few classes. CLASS_HEADS reads each
        class's head from the index and picks the class; the claim then takes that
        class's first unlocked row in index order. When other claimers hold every
        row left in the class, or nothing is found, the whole claimable set is sorted
        (READY_SORTED): the exact order, at the cost of reading every claimable row."""
        row = self._claimable(now, aging_s, lock, skip_runs)
        return None if row is None else self._candidate(row)

    def _claimable(self, now: float, aging_s: float, lock: bool, skip_runs: frozenset[str] = frozenset()) -> Any:
        """_ready's row: the candidate's fields, its state and its document."""
        rank = "rank" if aging_s <= 0 else "GREATEST(0, rank - floor(GREATEST(0, %(now)s - created) / %(aging)s))"
        args = {"now": now, "aging": aging_s, "me": self.host, "lease": self.lease_s, "skip": sorted(skip_runs)}
        locking = " FOR UPDATE SKIP LOCKED" if lock else ""
        row = self._fetch_one(CLASS_HEADS.format(rank=rank) + locking, args)
        return row if row is not None else self._fetch_one(READY_SORTED.format(rank=rank) + locking, args)

    @staticmethod
    def _candidate(r: Any) -> queue.Candidate:
        return candidate((*r[:6], r[8]))  # (ITEM_FIELDS: the state and the document between)

    def _fetch_one(self, statement: str, args: dict[str, Any]) -> Any:
        try:
            return self.pg.connect().execute(statement, args).fetchone()
        except psycopg.OperationalError as exc:
            raise StoreDownError(f"{self.path}: {_first_line(exc)}") from None

    # --- this host: its live sessions, its heartbeat and its leases' renewal ---

    def live(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return {str(sid): (str(item_id), jsonio.loads(doc)) for item_id, sid, doc in self.db.execute(
            "SELECT id, lease_session, doc FROM items WHERE state = 'running' AND lease_session IS NOT NULL "
            "AND lease_host = ?", (self.host,))}

    def beat(self, info: dict[str, Any], now: float | None = None) -> int:
        """This host's heartbeat (its loop's pid, start, version, sessions), and every
        lease it holds renewed to now + LEASE_S, in one transaction; answers how many."""
        now = time.time() if now is None else now
        expires = round(now + self.lease_s, 3)
        with self._tx():
            self.db.execute(HOST_PUT, (self.host, now, jsonio.dumps({**info, "host": self.host}).decode()))
            cur = self.pg.connect().execute(
                "UPDATE items SET lease_expires = %(e)s, doc = jsonb_set(doc::jsonb, '{lease,expires_epoch}', "
                "to_jsonb(%(e)s::float8))::text WHERE state = 'running' AND lease_host = %(h)s",
                {"e": expires, "h": self.host})
            return int(cur.rowcount)

    def hosts(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT name, heartbeat, doc FROM hosts ORDER BY name").fetchall()
        live = dict(self.db.execute("SELECT lease_host, count(*) FROM items WHERE state = 'running' "
                                    "GROUP BY lease_host").fetchall())
        now = time.time()
        out = [{"host": name, "heartbeat_age_s": round(now - beat, 1), "running": int(live.get(name, 0)),
                "this": name == self.host, "heartbeat": jsonio.loads(doc)} for name, beat, doc in rows]
        if not any(h["this"] for h in out):  # this host, before its loop's first heartbeat
            out += [h | {"host": self.host, "heartbeat_age_s": None, "running": int(live.get(self.host, 0)),
                         "this": True} for h in this_host(self.state_dir)]
        return out


def drop_schema(url: str, schema: str) -> None:
    """Tests: a schema of their own, gone afterwards (the URL's search_path names it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))
