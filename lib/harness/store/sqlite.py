"""The SQLite backend (issue 13, first part): the Store protocol over state/harness.db.

It passes the same contract suite as the files backend (tests/python/test_store_contract.py)
and is not the loop's default yet: `open_store(state_dir, "sqlite")` picks it. WAL
journal, a busy timeout, schema versions in PRAGMA user_version. Every item is one
row: its state and the columns a claim orders by, with the whole item as JSON. A
claim is one transaction (BEGIN IMMEDIATE): the best ready row is leased and its
fencing token (the item's claims) moves on in the same step; every later write of
that attempt presents the token. The audit log goes to the database and, as
before, to state/events.jsonl. A change of the live sessions touches
state/leases/ (live_changes), so that the sidecar's inotify watch sees it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline.policy import iso
from harness.store import attempts, queue
from harness.store.base import FencedError, Lease, SingleHost, StoreError, StoreUnavailableError, UnknownItemError
from harness.store.files import this_host
from harness.store.shared import SqliteShared

DB_FILE = "harness.db"
LOCK_NOTICE_S = 5.0  # sqlite's own busy wait, after which a waiting write says so on stderr
DB_LOCK_WAIT_S = 120.0  # the whole wait (HARNESS_DB_LOCK_WAIT_S, the configuration's DB_LOCK_WAIT_S)
# The schema, one step per version (PRAGMA user_version): a database is brought up
# to the newest step in one transaction; a newer database than this release knows
# is refused in one line.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        rank INTEGER NOT NULL,
        created REAL NOT NULL,
        not_before REAL NOT NULL DEFAULT 0,
        fixing INTEGER NOT NULL DEFAULT 0,
        lease_session TEXT,
        lease_token INTEGER,
        doc TEXT NOT NULL
    );
    CREATE INDEX items_state ON items (state);
    CREATE TABLE audit (n INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE kv (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
    """,
    # 2: runs (an item's run) and attempts (one row per session: its receipt's
    # numbers in columns; the whole receipt as JSON beside it, in receipts, so that
    # a report's scan reads narrow rows)
    """
    ALTER TABLE items ADD COLUMN run TEXT;
    ALTER TABLE items ADD COLUMN deps TEXT;
    CREATE INDEX items_run ON items (run);
    CREATE TABLE attempts (
        session_id TEXT PRIMARY KEY,
        item_id TEXT,
        run TEXT,
        attempt INTEGER,
        verdict TEXT,
        model TEXT,
        started REAL,
        ended REAL,
        wall_s REAL,
        ttft_s REAL,
        turns INTEGER,
        cost_usd REAL,
        cost_estimated INTEGER,
        input INTEGER,
        output INTEGER,
        cache_read INTEGER,
        cache_write INTEGER
    );
    CREATE TABLE receipts (session_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE INDEX attempts_started ON attempts (started);
    CREATE INDEX attempts_item ON attempts (item_id);
    CREATE INDEX attempts_run ON attempts (run);
    """,
    # 3: what /metrics counts beside the receipt's numbers: fix rounds, verify time,
    # claim-to-exec time, API retries by status (JSON); filled from the receipts
    """
    ALTER TABLE attempts ADD COLUMN fix_round INTEGER;
    ALTER TABLE attempts ADD COLUMN verify_s REAL;
    ALTER TABLE attempts ADD COLUMN claim_s REAL;
    ALTER TABLE attempts ADD COLUMN retries TEXT;
    UPDATE attempts SET
        fix_round = (SELECT json_extract(doc, '$.fix_round') FROM receipts r WHERE r.session_id = attempts.session_id),
        verify_s = (SELECT json_extract(doc, '$.verify.seconds') FROM receipts r WHERE r.session_id = attempts.session_id),
        claim_s = (SELECT json_extract(doc, '$.claim_to_exec_s') FROM receipts r WHERE r.session_id = attempts.session_id),
        retries = (SELECT NULLIF(json_extract(doc, '$.api_retries'), '{}') FROM receipts r
                   WHERE r.session_id = attempts.session_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
# deps: the item's depends_on as a JSON list, NULL when none (a claim reads it
# without decoding any item's whole document)
ITEM_COLUMNS = "id, state, rank, created, not_before, fixing, lease_session, lease_token, run, deps, doc"
ITEM_MARKS = ", ".join("?" * len(ITEM_COLUMNS.split(", ")))


def upsert(table: str, columns: str, key: str) -> str:
    """INSERT of a whole row that replaces the row with its key: one statement both
    SQLite (3.24 and later) and PostgreSQL take."""
    cols = columns.split(", ")
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(cols))}) ON CONFLICT ({key}) DO UPDATE SET {sets}"


KV_PUT = upsert("kv", "key, doc", "key")
ITEM_PUT = upsert("items", ITEM_COLUMNS, "id")
ATTEMPT_PUT = upsert("attempts", ", ".join(attempts.ATTEMPT_COLUMNS), "session_id")
RECEIPT_PUT = upsert("receipts", "session_id, doc", "session_id")


def _epoch(text: Any) -> float:
    try:
        return jsonio.parse_iso(str(text)).timestamp() if text else 0.0
    except ValueError:
        return 0.0


def _lease_doc(item: dict[str, Any]) -> dict[str, Any]:
    lease = item.get("lease")
    return lease if isinstance(lease, dict) else {}


CANDIDATE_COLUMNS = "id, rank, created, not_before, deps, fixing, run"


def candidate(r: Any) -> queue.Candidate:
    """A claim candidate from its columns (CANDIDATE_COLUMNS, in that order)."""
    return queue.Candidate(r[0], r[1], r[2], r[3], list(jsonio.loads(r[4])) if r[4] else [], bool(r[5]), r[6])


def row_values(item: dict[str, Any]) -> tuple[Any, ...]:
    rank = queue.PRIORITIES.index(item["priority"]) if item.get("priority") in queue.PRIORITIES else 2
    lease = _lease_doc(item)
    return (item["id"], item["state"], rank, _epoch(item.get("created_at")), _epoch(item.get("not_before")),
            int(bool(item.get("fix"))), lease.get("session_id"), lease.get("token"), item.get("run"),
            jsonio.dumps(item["depends_on"]).decode() if item.get("depends_on") else None, jsonio.dumps(item).decode())


@dataclass
class SqliteDb(SingleHost):
    """The database: its connection, schema and transactions, and the records beside
    the items (audit, pause, breaker, hosts; the leases' inotify signal)."""

    state_dir: Path
    db_file: str = DB_FILE  # another name only while a migration builds the database

    def __post_init__(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.state_dir / self.db_file
        # made 0600 once, and never opened by hand again: closing any descriptor of
        # harness.db drops every POSIX lock this process holds on it, among them the
        # shared lock that keeps another process's last close from checkpointing and
        # deleting the WAL a live connection of this one still writes to
        with suppress(FileExistsError):
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        try:
            self.db = sqlite3.connect(self.path, timeout=LOCK_NOTICE_S, isolation_level=None, check_same_thread=False)
            self._locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        return StoreUnavailableError(f"{self.path}: not a usable SQLite database ({exc}); nothing was changed: restore it "
                                "from a backup, or check its permissions")

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreUnavailableError(f"{self.path} has schema {version}; this release knows up to "
                             f"{SCHEMA_VERSION}: run a newer harness")
        if version < SCHEMA_VERSION:
            with self._tx():
                version = int(self.db.execute("PRAGMA user_version").fetchone()[0])  # another process's, maybe
                for step in MIGRATIONS[version:]:
                    for statement in step.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _locked(self, step: Callable[[], Any]) -> Any:
        """step(), waiting while another process holds the database's write lock (a
        person's sqlite3 shell, say): after LOCK_NOTICE_S a line on stderr says so;
        after DB_LOCK_WAIT_S the wait ends in StoreUnavailableError."""
        limit = float(os.environ.get("HARNESS_DB_LOCK_WAIT_S") or DB_LOCK_WAIT_S)
        began = time.monotonic()
        told = False
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                waited = time.monotonic() - began
                if waited >= limit:
                    raise StoreUnavailableError(f"{self.path} stayed locked by another process for {waited:.0f} s "
                                           f"(DB_LOCK_WAIT_S={limit:g}); nothing was changed") from None
                if not told:
                    print(f"harness: {self.path} is locked by another process; waiting up to {limit:g} s",
                          file=sys.stderr)
                    told = True

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): no two claimers
        ever read the same ready row as free."""
        self._locked(lambda: self.db.execute("BEGIN IMMEDIATE"))
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def init(self) -> None:
        (self.state_dir / "leases").mkdir(mode=0o700, exist_ok=True)

    def _serialize(self, what: str) -> None:
        """Inside a transaction: no other writer of `what` (the pause, the breaker, the
        audit index) runs until it ends. SQLite's write transaction holds the whole
        database already; a server's backend takes a lock of that name."""

    def _audit_key(self) -> str:
        """The kv record of how far state/events.jsonl is indexed."""
        return "audit_index"

    # --- live sessions' signal ---

    def _touch_lease(self, session_id: str, gone: bool = False) -> None:
        """state/leases/<session>: made at a claim, removed at the finish; only a signal
        for inotify (the database is the record)."""
        if not session_id:  # a lease cut short before its session was recorded
            return
        leases = self.state_dir / "leases"
        leases.mkdir(mode=0o700, exist_ok=True)
        path = leases / session_id
        if gone:
            with suppress(OSError):  # only a signal: the move has committed
                path.unlink(missing_ok=True)
        else:
            path.touch(mode=0o600)

    def live_changes(self) -> list[Path]:
        return [self.state_dir / "leases"]

    # --- audit, pause, breaker, hosts ------------------------------------

    def audit(self, event: str, **fields: Any) -> None:
        """One line in state/events.jsonl: the one log every writer appends to (bash
        and Python alike); the database indexes it when it is read (events)."""
        jsonio.audit(self.state_dir, event, **fields)

    def events(self) -> Iterator[dict[str, Any]]:
        self.index_audit()
        for (doc,) in self.db.execute("SELECT doc FROM audit ORDER BY n"):
            yield jsonio.loads(doc)

    def event_counts(self, names: list[str]) -> dict[str, int]:
        self.index_audit()
        marks = ", ".join("?" * len(names))
        return dict(self.db.execute(f"SELECT event, count(*) FROM audit WHERE event IN ({marks}) GROUP BY event", names))

    def index_audit(self, skipped: list[str] | None = None, again: bool = False) -> int:
        """The audit log's lines not yet in the database, added; returns how many.
        A log rotated away keeps its rows, and the new file is read from its start;
        again (reindex) drops every row and reads what logrotate left, then the file (read_audit)."""
        path = self.state_dir / "events.jsonl"
        with self._tx():
            self._serialize("audit")
            mark = self._kv(self._audit_key()) or {}
            try:
                st = path.stat()
            except FileNotFoundError:
                return 0
            rows, new_mark = read_audit(path, st, mark, again, skipped if skipped is not None else [])
            if again:
                self.db.execute("DELETE FROM audit")
            self.db.executemany("INSERT INTO audit (event, doc) VALUES (?, ?)", rows)
            self.db.execute(KV_PUT, (self._audit_key(), jsonio.dumps(new_mark).decode()))
        return len(rows)

    def _kv(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT doc FROM kv WHERE key = ?", (key,)).fetchone()
        return jsonio.loads(row[0]) if row else None

    def set_run_budget(self, run: str, usd: float) -> None:
        with self._tx():
            self.db.execute(KV_PUT, (f"run_budget:{run}", jsonio.dumps({"usd": usd}).decode()))
        self.audit("run.budget", run=run, usd=usd)

    def run_budgets(self) -> dict[str, float]:
        rows = self.db.execute("SELECT key, doc FROM kv WHERE key LIKE ?", ("run_budget:%",)).fetchall()
        return {key.removeprefix("run_budget:"): float(jsonio.loads(doc)["usd"]) for key, doc in rows}

    def pause(self) -> dict[str, Any] | None:
        return self._kv("pause")

    def set_pause(self, until: float, reason: str, by: str, session: str | None = None) -> None:
        with self._tx():
            self._serialize("pause")
            later = (self._kv("pause") or {}).get("until_epoch")
            if isinstance(later, (int, float)) and later >= until and by != "operator":
                return
            when = iso(until)
            record = {"until_epoch": round(until, 3), "until": when, "reason": reason, "by": by, "session": session,
                      "paused_at": jsonio.utc_now_iso()}
            self.db.execute(KV_PUT, ("pause", jsonio.dumps(record).decode()))
        self.audit("loop.paused", until_epoch=round(until, 3), until=when, reason=reason, by=by, session=session)

    def clear_pause(self, by: str) -> bool:
        with self._tx():
            gone = self.db.execute("DELETE FROM kv WHERE key = 'pause'").rowcount > 0
        if gone:
            self.audit("loop.resumed", by=by)
        return gone

    @contextmanager
    def breaker(self, fresh: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._tx():
            self._serialize("breaker")
            record = dict(fresh)
            stored = self._kv("breaker") or {}
            if stored.get("state") in ("closed", "open", "half_open"):
                record.update(stored)
            before = jsonio.dumps(record)
            yield record
            if jsonio.dumps(record) != before:
                record["updated_at"] = jsonio.utc_now_iso()
                self.db.execute(KV_PUT, ("breaker", jsonio.dumps(record).decode()))

    def hosts(self) -> list[dict[str, Any]]:
        return this_host(self.state_dir)


@dataclass
class SqliteRecords(SqliteDb):
    """Attempts (one row per session, from its receipt) and the rebuild of attempts
    and the audit rows from the files they come from (reindex)."""

    def _put_attempt(self, receipt: dict[str, Any]) -> None:
        r = attempts.row(receipt)
        if not r["session_id"]:
            raise StoreError("a receipt without a session_id cannot be recorded")
        self.db.execute(ATTEMPT_PUT, tuple(r[c] for c in attempts.ATTEMPT_COLUMNS))
        self.db.execute(RECEIPT_PUT, (r["session_id"], jsonio.dumps(receipt).decode()))

    def record_attempt(self, receipt: dict[str, Any]) -> None:
        """The session's receipt as its attempt (again after a repeated finalize: replaced)."""
        with self._tx():
            self._put_attempt(receipt)

    def attempts(self, since: float | None = None, run: str | None = None,
                 skipped: list[str] | None = None) -> list[dict[str, Any]]:
        from harness.store.sqlite_report import where_clause

        cols = attempts.ATTEMPT_COLUMNS
        where, args = where_clause(since, run)
        cur = self.db.execute(f"SELECT {', '.join(cols)} FROM attempts WHERE {where}", args)
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def rollup(self, by: str, since: float | None = None, run: str | None = None) -> dict[str, Any]:
        """report.sh's roll-up, computed by the database (store/sqlite_report.py)."""
        from harness.report import rollup as reference
        from harness.store import sqlite_report

        if by not in sqlite_report.KEY_SQL:
            raise ValueError(f"--by takes one of {', '.join(reference.GROUPINGS)}; got {by!r}")
        return sqlite_report.rollup(self.db, by, since, run, reference.MEASURES, reference.PERCENTILES)

    def reindex(self) -> dict[str, int]:
        """Attempts rebuilt from the sessions' receipt files, the audit rows from
        state/events.jsonl (and what logrotate left of it: events.jsonl.N, gzipped
        or not): what the files hold, the database holds again. The attempts of
        sessions whose directories retention removed (loopctl.sh gc) are kept."""
        skipped: list[str] = []
        with self._tx():  # the scan inside: a session finalized meanwhile waits, then records itself
            receipts = list(attempts.receipts(self.state_dir, skipped))
            for receipt in receipts:
                self._put_attempt(receipt)
        events = self.index_audit(skipped, again=True)
        for line in skipped:
            print(f"reindex: skipped {line}", file=sys.stderr)
        return {"attempts": len(receipts), "events": events, "skipped": len(skipped)}


HEAD_BYTES = 256  # of the audit log, kept as a digest with the offset: a file truncated in place is told apart


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def rotated(path: Path, skipped: list[str]) -> Iterator[bytes]:
    """What logrotate left of a log: path.N and path.N.gz, oldest (highest N) first; one
    that cannot be read is named in skipped."""
    found = []
    for p in path.parent.glob(path.name + ".*"):
        n = p.name[len(path.name) + 1:].removesuffix(".gz")
        if n.isdigit():
            found.append((int(n), p))
    for _n, p in sorted(found, reverse=True):
        try:
            yield gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            skipped.append(f"{p}: {exc}")


def read_audit(path: Path, st: os.stat_result, mark: dict[str, Any], again: bool,
               skipped: list[str]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The audit log's rows not yet indexed (again: what logrotate left, then the whole
    file), and the mark to keep: offset, inode, and a digest of the first bytes."""
    offset = int(mark.get("offset") or 0)
    rows: list[tuple[str, str]] = []
    if again:
        for older in rotated(path, skipped):  # oldest first
            rows += audit_lines(older, path, skipped)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        moved = "head" in mark and mark["head"] != _digest(head[: int(mark.get("head_len") or 0)])
        if again or mark.get("inode") != st.st_ino or st.st_size < offset or moved:
            # a log rotated away (renamed, or truncated in place: copytruncate, even one grown
            # past the old offset since, whose first bytes differ): its rows stay, the new one is
            # read whole
            offset = 0
        fh.seek(offset)
        data = fh.read(st.st_size - offset)
    whole = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
    rows += audit_lines(whole, path, skipped)
    head = head[: min(len(head), offset + len(whole))]
    return rows, {"offset": offset + len(whole), "inode": st.st_ino, "head": _digest(head), "head_len": len(head)}


def audit_lines(data: bytes, path: Path, skipped: list[str]) -> list[tuple[str, str]]:
    """Audit log lines as (event, line) rows; a line that is not an event is skipped."""
    rows: list[tuple[str, str]] = []
    for line in data.splitlines():
        try:
            doc = jsonio.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("event"), str):
            rows.append((doc["event"], line.decode("utf-8", "replace")))
        elif line.strip():
            skipped.append(f"{path}: a line that is not an audit event ({line[:60]!r})")
    return rows


@dataclass
class SqliteStore(SqliteRecords, SqliteShared):
    """The Store protocol over the database: items, claims with their fencing tokens, live sessions."""

    # --- items -----------------------------------------------------------

    def _load(self, item_id: str) -> tuple[str, dict[str, Any]] | None:
        row = self.db.execute("SELECT state, doc FROM items WHERE id = ?", (item_id,)).fetchone()
        return (row[0], jsonio.loads(row[1])) if row else None

    def _put(self, item: dict[str, Any]) -> None:
        self.db.execute(ITEM_PUT, row_values(item))

    def add(self, entries: list[tuple[str, Any]]) -> list[str]:
        now = jsonio.utc_now_iso()
        with self._tx():
            existing = self.states()
            batch: dict[str, dict[str, Any]] = {}
            for where, raw in entries:
                try:
                    item = queue.normalize(raw, now)
                except queue.QueueError as exc:
                    raise queue.QueueError(f"{where}: {exc}") from None
                if item["id"] in existing:
                    raise queue.QueueError(f"{where}: duplicate id {item['id']} (already {existing[item['id']]})")
                if item["id"] in batch:
                    raise queue.QueueError(f"{where}: duplicate id {item['id']} (twice in this input)")
                batch[item["id"]] = item
            for item in batch.values():
                for dep in item["depends_on"]:
                    if dep not in existing and dep not in batch:
                        raise queue.QueueError(f"item {item['id']}: depends on unknown id {dep}")
            queue._check_cycles(batch)
            for item in batch.values():
                item.update(state="pending", updated_at=now)
                self._put(item)
        for item in batch.values():
            self.audit("item.added", item=item["id"], to="pending", priority=item["priority"],
                       prompt_bytes=len(item["prompt"].encode("utf-8", "surrogatepass")))
        return list(batch)

    def get(self, item_id: str) -> tuple[str, dict[str, Any]]:
        found = self._load(queue.check_id(item_id) if isinstance(item_id, str) else item_id)
        if found is None:
            raise UnknownItemError(f"unknown item id: {item_id}")
        return found

    def states(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, state FROM items"))

    def items(self, states: list[str]) -> list[dict[str, Any]]:
        every = self.states()
        marks = ",".join("?" * len(states))
        rows = []
        for state, doc in self.db.execute(f"SELECT state, doc FROM items WHERE state IN ({marks})", states):
            row = queue.summary_row(jsonio.loads(doc), state)
            if state == "pending":
                deps = list(row.get("depends_on") or [])
                row["blocked"] = queue.blocked_reason(deps, every)
                row["waiting_for"] = [d for d in deps if every.get(d) != "succeeded"]
            rows.append(row)
        order = {s: i for i, s in enumerate(queue.STATES)}
        rows.sort(key=lambda r: (order.get(r["state"], 9),
                                 queue.PRIORITIES.index(r["priority"]) if r.get("priority") in queue.PRIORITIES else 9,
                                 str(r.get("created_at", "")), r["id"]))
        return rows

    def _candidates(self, now: float, aging_s: float) -> list[queue.Candidate]:
        """Pending items in claim order, from their columns alone."""
        cands = [candidate(r) for r in self.db.execute(f"SELECT {CANDIDATE_COLUMNS} FROM items WHERE state = 'pending'")]
        cands.sort(key=lambda c: (not c.fixing, c.effective_rank(now, aging_s), c.created, c.item_id))
        return cands

    def pending(self, now: float, aging_s: float = 0.0) -> list[queue.Candidate]:
        """Pending items in claim order (what a claim would try, first to last)."""
        return self._candidates(now, aging_s)

    def claim(self, session_id: str, worker: str, now: float, admit: Callable[[], bool] | None = None,
              aging_s: float = 0.0, skip_runs: frozenset[str] = frozenset()) -> Lease | None:
        # admit (the claim gate: the breaker's half-open probe) is asked once an item is
        # ready, outside the transaction: it writes the breaker's record itself
        if admit is not None and (self._ready(now, aging_s, skip_runs) is None or not admit()):
            return None
        with self._tx():
            c = self._ready(now, aging_s, skip_runs)
            if c is not None:
                found = self._load(c.item_id)
                assert found is not None
                item = found[1]
                item["state"] = "running"
                item["claims"] = int(item.get("claims") or 0) + 1
                item["lease"] = {"session_id": session_id, "token": item["claims"], "worker": worker,
                                 "host": socket.gethostname(), "pid": os.getppid(),
                                 "claimed_at": jsonio.utc_now_iso()}
                item["updated_at"] = item["lease"]["claimed_at"]
                self._put(item)
                self._touch_lease(session_id)
                return Lease(c.item_id, session_id, item["claims"], worker, item)
        return None

    def _ready(self, now: float, aging_s: float, skip_runs: frozenset[str] = frozenset()) -> queue.Candidate | None:
        """The best pending item that may run now (not held back, its dependencies done, its run
        not skipped): the claim order of _candidates, computed by the database, read until one is ready."""
        rank = "rank" if aging_s <= 0 else "max(0, rank - CAST(max(0.0, ? - created) / ? AS INTEGER))"
        cur = self.db.execute(f"SELECT {CANDIDATE_COLUMNS} FROM items WHERE state = 'pending' AND not_before <= ? "
                              f"ORDER BY fixing DESC, {rank}, created, id", (now, now, aging_s) if aging_s > 0 else (now,))
        for c in map(candidate, cur):
            if c.run and c.run in skip_runs:
                continue
            if c.depends_on:
                marks = ", ".join("?" * len(c.depends_on))
                done = self.db.execute(f"SELECT count(*) FROM items WHERE state = 'succeeded' AND id IN ({marks})",
                                       c.depends_on).fetchone()[0]
                if done < len(set(c.depends_on)):
                    continue
            return c
        return None

    def lease_of(self, item_id: str) -> Lease | None:
        found = self._load(item_id)
        if found is None or found[0] != "running":
            return None
        item = found[1]
        lease = _lease_doc(item)
        token = lease.get("token")
        return Lease(item_id, str(lease.get("session_id") or ""), token if isinstance(token, int) else 0,
                     str(lease.get("worker") or ""), item)

    def _move(self, item: dict[str, Any], to_state: str, record: dict[str, Any],
              updates: dict[str, Any] | None) -> dict[str, Any]:
        self._put(queue.moved(item, to_state, record, updates))
        return item

    def finish(self, lease: Lease, to_state: str, record: dict[str, Any], attempts: int,
               not_before: str | None, updates: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._tx():
            current = self.lease_of(lease.item_id)
            if current is None or (current.session_id, current.token) != (lease.session_id, lease.token):
                held = f"held by {current.session_id} (token {current.token})" if current else "not running"
                raise FencedError(f"item {lease.item_id}: the lease of {lease.session_id} (token {lease.token}) is "
                                  f"stale; the item is {held}")
            assert current.item is not None
            item = current.item
            item.update(attempts=attempts, not_before=not_before)
            item.pop("lease", None)
            out = self._move(item, to_state, record, updates)
        self._touch_lease(lease.session_id, gone=True)
        return out

    def settle(self, item_id: str, from_state: str, to_state: str, record: dict[str, Any],
               updates: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._tx():
            found = self._load(item_id)
            if found is None or found[0] != from_state:
                raise UnknownItemError(f"item {item_id} is no longer {from_state}")
            return self._move(found[1], to_state, record, updates)

    def cancel(self, item_id: str) -> str:
        sid = ""
        with self._tx():
            state, item = self.get(item_id)
            if state in ("pending", "verified", "quarantined"):
                item.update(state="canceled", updated_at=jsonio.utc_now_iso())
                self._put(item)
            elif state == "running":
                sid = str(_lease_doc(item).get("session_id") or "")
                if not sid:
                    raise queue.QueueError(f"item {item_id} is running but has no session recorded")
            else:
                raise queue.QueueError(f"item {item_id} is already {state}")
        if state == "running":
            sdir = self.state_dir / "sessions" / sid
            sdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            jsonio.write_atomic(sdir / "cancel", b"canceled by operator\n")
            self.audit("item.cancel_requested", item=item_id, session=sid)
            return f"cancel requested for {item_id} (session {sid}); the loop stops it"
        self.audit("item.canceled", item=item_id, **{"from": state, "to": "canceled"}, reason="canceled by operator")
        return f"canceled {item_id}"

    def retry(self, item_id: str) -> str:
        with self._tx():
            state, item = self.get(item_id)
            if state not in ("quarantined", "canceled"):
                raise queue.QueueError(f"item {item_id} is {state}; only quarantined or canceled items can be retried")
            item.update(state="pending", attempts=0, not_before=None, updated_at=jsonio.utc_now_iso())
            item.pop("fix", None)
            item.pop("fix_rounds", None)
            self._put(item)
        self.audit("item.retry", item=item_id, **{"from": state, "to": "pending"}, reason="retried by operator")
        return f"{item_id}: {state} -> pending"

    # --- live sessions ---

    def live(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return {str(sid): (str(item_id), jsonio.loads(doc)) for item_id, sid, doc in self.db.execute(
            "SELECT id, lease_session, doc FROM items WHERE state = 'running' AND lease_session IS NOT NULL")}
