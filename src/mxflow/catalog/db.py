"""The results catalog: one SQLite file (WAL mode) in the output directory.

``OUT/mxflow.sqlite`` records every dataset and wedge mxflow has seen, its
processing status, attempts, timings, the steps the engine ran, the result
(space group, cell, resolution, statistics) and, for failures, the reason in
plain words.  Merges and hit maps go in a ``products`` table.

Tables
------
``datasets``  one row per unit of processing, keyed by its work directory
              relative to OUT (``proc/<pin>/<dataset>`` or
              ``proc_30deg/<pin>/<dataset>_<first>-<last>``); ``kind`` is
              ``sweep`` or ``wedge``; ``status`` one of pending, running, ok,
              failed, skipped; ``result_json`` the full DatasetResult.
``wedges``    a view: the rows of ``datasets`` whose kind is ``wedge``.
``steps``     the engine steps of each dataset (name, exit status, wall time,
              log path, whether it was skipped because already complete).
``runs``      one row per ``mxflow run`` / ``watch`` invocation (PID, host, times,
              counts, peak memory of the orchestrator and of its children), its
              status (running, ok, failed, interrupted) and a note saying why it
              was interrupted; a row left ``running`` by a killed run is recorded
              ``interrupted`` by the next command holding the lock
              (:meth:`Catalog.close_stale_runs`).
``products``  merges and hit maps (kind, name, status, reason, result), and
              the samples decided after processing (kind ``sample_group``:
              ``mxflow run --group-by-cell``; the rows keep their discovered
              sample, :meth:`Catalog.grouped_samples` says which they merge as).
``rejected``  the files the latest discovery could not use (path, reason, when first
              and last seen, the run that saw them): an unreadable frame, an Eiger
              master without its data file; replaced at each discovery
              (:meth:`Catalog.record_rejected`).

Consistency rules: only one process writes (the run that holds
``OUT/.mxflow.lock``); every update is one transaction; a dataset becomes
``ok`` only after its outputs and its ``mxflow_result.json`` are on disk, so a
catalog read at any moment — or after ``kill -9`` — never shows a half-written
result as complete.  Rows left ``running`` by a killed run are reset to
``pending`` by the next run (:meth:`Catalog.reset_interrupted`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mxflow.model import Dataset, DatasetResult, MergeRecord, MergeSummary, from_dict, to_dict

CATALOG_NAME = "mxflow.sqlite"
#: products of this kind record the samples decided after processing (grouped by cell)
SAMPLE_GROUP = "sample_group"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT, pid INTEGER, host TEXT,
    started REAL, finished REAL, status TEXT,
    n_ok INTEGER, n_failed INTEGER, n_pending INTEGER,
    wall_s REAL, peak_rss_mb REAL, children_peak_rss_mb REAL, note TEXT
);
CREATE TABLE IF NOT EXISTS datasets (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL, sample TEXT, mode TEXT, wedge TEXT, kind TEXT,
    parent TEXT, template TEXT, first INTEGER, last INTEGER,
    wavelength REAL, osc_width REAL, total_rotation REAL,
    dataset_json TEXT,
    status TEXT NOT NULL DEFAULT 'pending', reason TEXT DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, run_id INTEGER,
    first_seen REAL, started REAL, finished REAL, wall_s REAL,
    space_group TEXT, unit_cell TEXT, d_min REAL, completeness REAL,
    indexed_fraction REAL, result_json TEXT, updated REAL
);
CREATE INDEX IF NOT EXISTS datasets_status ON datasets (status);
CREATE INDEX IF NOT EXISTS datasets_sample ON datasets (sample);
CREATE VIEW IF NOT EXISTS wedges AS SELECT * FROM datasets WHERE kind = 'wedge';
CREATE TABLE IF NOT EXISTS steps (
    dataset TEXT NOT NULL REFERENCES datasets (key) ON DELETE CASCADE,
    idx INTEGER NOT NULL, name TEXT, returncode INTEGER, wall_s REAL,
    skipped INTEGER, note TEXT, log TEXT, command TEXT,
    PRIMARY KEY (dataset, idx)
);
CREATE TABLE IF NOT EXISTS products (
    kind TEXT NOT NULL, name TEXT NOT NULL, status TEXT, reason TEXT,
    result_json TEXT, updated REAL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS rejected (
    path TEXT PRIMARY KEY, reason TEXT NOT NULL,
    first_seen REAL, updated REAL, run_id INTEGER
);
"""


def catalog_path(out: str | Path) -> Path:
    return Path(out) / CATALOG_NAME


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; in a folder that cannot be written (a read-only mount, no
    write permission) the catalog is read as an immutable file, since the WAL's shared
    memory file cannot be made there and no run can be writing it either."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(
        f"file:{path}?mode=ro&immutable=1", uri=True, timeout=30, isolation_level=None
    )


class Catalog:
    """Read/write access to ``OUT/mxflow.sqlite``.

    Open it read-only (``readonly=True``) to inspect a directory that a run
    may be writing at the same moment (WAL lets readers and the writer work
    concurrently).
    """

    def __init__(self, out: str | Path, readonly: bool = False):
        self.out = Path(out)
        self.path = catalog_path(out)
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                from mxflow.errors import BadInputError

                raise BadInputError(
                    str(self.path), "no mxflow catalog here (run 'mxflow run' first)"
                )
            self.conn = _connect_readonly(self.path)
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        self.conn.row_factory = sqlite3.Row

    # -- plumbing ---------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on any exception)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------
    def start_run(self, command: str, pid: int, host: str) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (command, pid, host, started, status) VALUES (?, ?, ?, ?, 'running')",
                (command, pid, host, time.time()),
            )
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        counts = self.counts()
        values = {
            "finished": time.time(),
            "status": status,
            "n_ok": counts.get("ok", 0),
            "n_failed": counts.get("failed", 0),
            "n_pending": counts.get("pending", 0) + counts.get("running", 0),
            **fields,
        }
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))

    def runs(self) -> list[dict[str, Any]]:
        """Every run recorded, oldest first.

        ``status`` is running (or left so by a run that was killed: see
        :func:`mxflow.catalog.lock.run_is_gone`), ok, failed or interrupted (stopped
        by a signal, or datasets left unprocessed); ``note`` says why, for an
        interrupted run.
        """
        return [dict(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY id")]

    def close_stale_runs(
        self,
        is_gone: Callable[[dict[str, Any]], bool] | None = None,
        note: Callable[[dict[str, Any]], str] | str = (
            "ended without recording its end (killed, or the machine went down)"
        ),
    ) -> list[dict[str, Any]]:
        """Record as ``interrupted`` the runs still marked running whose process is gone.

        ``is_gone`` picks them (default: every running run, which is right only while
        holding the output directory's lock, as :meth:`reset_interrupted`); ``note``
        (a text, or a function of the row) says why.  Returns the rows as they were.
        """
        with self.transaction() as c:
            rows = [dict(r) for r in c.execute("SELECT * FROM runs WHERE status = 'running'")]
            stale = [r for r in rows if is_gone is None or is_gone(r)]
            c.executemany(
                "UPDATE runs SET status = 'interrupted', note = ? WHERE id = ?",
                [(note(r) if callable(note) else note, r["id"]) for r in stale],
            )
        return sorted(stale, key=lambda r: r["id"])

    # -- datasets -----------------------------------------------------------
    def add_dataset(self, key: str, dataset: Dataset, kind: str, parent: str | None = None) -> bool:
        """Register a dataset (status pending) or refresh its description.

        Never touches status, attempts or results of a known dataset.
        Returns True when the dataset is new to the catalog.
        """
        sweep = dataset.sweep
        first, last = dataset.frames
        desc = {
            "name": dataset.name,
            "sample": dataset.sample,
            "mode": dataset.mode,
            "wedge": dataset.wedge_label,
            "kind": kind,
            "parent": parent,
            "template": sweep.template,
            "first": first,
            "last": last,
            "wavelength": sweep.wavelength,
            "osc_width": sweep.osc_width,
            "total_rotation": (last - first + 1) * sweep.osc_width,
            "dataset_json": json.dumps(to_dict(dataset)),
        }
        with self.transaction() as c:
            exists = c.execute("SELECT 1 FROM datasets WHERE key = ?", (key,)).fetchone()
            if exists:
                sets = ", ".join(f"{k} = ?" for k in desc)
                c.execute(f"UPDATE datasets SET {sets} WHERE key = ?", (*desc.values(), key))
                return False
            cols = ", ".join(["key", *desc, "first_seen", "updated"])
            marks = ", ".join("?" * (len(desc) + 3))
            now = time.time()
            c.execute(
                f"INSERT INTO datasets ({cols}) VALUES ({marks})", (key, *desc.values(), now, now)
            )
            return True

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM datasets WHERE key = ?", (key,)).fetchone()
        return dict(row) if row else None

    def status_of(self, key: str) -> str | None:
        row = self.conn.execute("SELECT status FROM datasets WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """All dataset rows (optionally of one status), sweeps before wedges, by key."""
        sql = "SELECT * FROM datasets"
        args: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        sql += " ORDER BY kind = 'wedge', key"
        return [dict(r) for r in self.conn.execute(sql, args)]

    def counts(self) -> dict[str, int]:
        return {
            r[0]: r[1]
            for r in self.conn.execute("SELECT status, COUNT(*) FROM datasets GROUP BY status")
        }

    def set_status(self, key: str, status: str, reason: str = "") -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE datasets SET status = ?, reason = ?, updated = ? WHERE key = ?",
                (status, reason, time.time(), key),
            )

    def mark_running(self, key: str, run_id: int) -> None:
        """The dataset was handed to a worker: status running, one more attempt."""
        now = time.time()
        with self.transaction() as c:
            c.execute(
                "UPDATE datasets SET status = 'running', reason = '', attempts = attempts + 1,"
                " run_id = ?, started = ?, updated = ? WHERE key = ?",
                (run_id, now, now, key),
            )

    def reset_interrupted(self) -> int:
        """Rows left 'running' by a run that died become 'pending' again; returns how many.

        Call only while holding the output directory's lock (no live run can
        own those rows then).
        """
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE datasets SET status = 'pending',"
                " reason = 'interrupted (the run processing it stopped); will be resumed',"
                " updated = ? WHERE status = 'running'",
                (time.time(),),
            )
            return cur.rowcount

    def record_result(self, key: str, result: DatasetResult, run_id: int | None = None) -> None:
        """Store a finished dataset's result and steps in one transaction."""
        completeness = result.stats.overall.completeness if result.stats else None
        now = time.time()
        with self.transaction() as c:
            c.execute(
                "UPDATE datasets SET status = ?, reason = ?, finished = ?, wall_s = ?,"
                " space_group = ?, unit_cell = ?, d_min = ?, completeness = ?,"
                " indexed_fraction = ?, result_json = ?, updated = ?,"
                " run_id = COALESCE(?, run_id) WHERE key = ?",
                (
                    result.status,
                    result.reason,
                    now,
                    result.wall_s,
                    result.space_group,
                    json.dumps(result.unit_cell) if result.unit_cell else None,
                    result.d_min,
                    completeness,
                    result.indexed_fraction,
                    json.dumps(to_dict(result)),
                    now,
                    run_id,
                    key,
                ),
            )
            c.execute("DELETE FROM steps WHERE dataset = ?", (key,))
            c.executemany(
                "INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        i,
                        s.name,
                        s.returncode,
                        s.wall_s,
                        int(s.skipped),
                        s.note,
                        s.log,
                        json.dumps(list(s.command)),
                    )
                    for i, s in enumerate(result.steps)
                ],
            )

    def steps(self, key: str) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.conn.execute("SELECT * FROM steps WHERE dataset = ? ORDER BY idx", (key,))
        ]

    def result(self, key: str) -> DatasetResult | None:
        """The stored DatasetResult of a finished dataset (None until it finished)."""
        row = self.conn.execute("SELECT result_json FROM datasets WHERE key = ?", (key,)).fetchone()
        if not row or not row[0]:
            return None
        return DatasetResult.from_dict(json.loads(row[0]))

    # -- merges and hit maps -----------------------------------------------
    def record_product(
        self, kind: str, name: str, status: str, reason: str = "", result: Any = None
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO products VALUES (?, ?, ?, ?, ?, ?)",
                (kind, name, status, reason, json.dumps(result, default=str), time.time()),
            )

    def record_merge(self, record: MergeRecord) -> None:
        """Store (or replace) one merge of ``mxflow run``."""
        payload = {"inputs": record.inputs, "workdir": record.workdir}
        if record.summary is not None:
            payload["summary"] = to_dict(record.summary)
        self.record_product("merge", record.name, record.status, record.reason, payload)

    def forget_merge(self, name: str) -> None:
        """Remove the record of merge ``name`` (one for a sample that no longer exists)."""
        with self.transaction() as c:
            c.execute("DELETE FROM products WHERE kind = 'merge' AND name = ?", (name,))

    # -- samples decided after processing (mxflow run --group-by-cell) -------
    def record_sample_groups(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """Replace the recorded sample groups by ``groups`` (none: every dataset has its
        discovered sample again).

        Each group is a dict with at least ``name`` (the sample its datasets are merged
        as) and ``datasets`` (their catalog keys); the rest (how it was decided, its
        space group and cell, the samples it joins) is kept as given.
        """
        now = time.time()
        with self.transaction() as c:
            c.execute("DELETE FROM products WHERE kind = ?", (SAMPLE_GROUP,))
            c.executemany(
                "INSERT INTO products VALUES (?, ?, 'ok', '', ?, ?)",
                [(SAMPLE_GROUP, g["name"], json.dumps(dict(g)), now) for g in groups],
            )

    def sample_groups(self) -> list[dict[str, Any]]:
        """The recorded sample groups (see :meth:`record_sample_groups`), by name."""
        return [p["result"] for p in self.products(SAMPLE_GROUP) if p["result"]]

    def grouped_samples(self) -> dict[str, str]:
        """Catalog key → the sample a recorded group gives it (only the grouped datasets).

        Rows keep the sample discovery gave them; this says which sample they are
        merged and shown as.
        """
        return {key: g["name"] for g in self.sample_groups() for key in g.get("datasets", [])}

    def merges(self) -> list[MergeRecord]:
        """Every merge recorded, by name."""
        out = []
        for p in self.products("merge"):
            result = p["result"] or {}
            summary = result.get("summary")
            out.append(
                MergeRecord(
                    p["name"],
                    p["status"],
                    p["reason"] or "",
                    list(result.get("inputs") or []),
                    result.get("workdir") or "",
                    from_dict(MergeSummary, summary) if summary else None,
                )
            )
        return out

    # -- files discovery rejected ---------------------------------------------
    def record_rejected(
        self, problems: Sequence[tuple[str, str]], run_id: int | None = None
    ) -> None:
        """Record ``problems`` ((path, reason) of files discovery could not use) as the
        rejected files, replacing those of the previous discovery.

        A file rejected again keeps when it was first seen; one no longer rejected
        (fixed, or deleted) leaves the record.
        """
        now = time.time()
        latest = {str(p): str(r) for p, r in problems}
        with self.transaction() as c:
            known = {row[0] for row in c.execute("SELECT path FROM rejected")}
            c.executemany(
                "DELETE FROM rejected WHERE path = ?", [(p,) for p in known - set(latest)]
            )
            c.executemany(
                "INSERT INTO rejected (path, reason, first_seen, updated, run_id)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " reason = excluded.reason, updated = excluded.updated, run_id = excluded.run_id",
                [(p, r, now, now, run_id) for p, r in latest.items()],
            )

    def rejected(self) -> list[dict[str, Any]]:
        """The files the latest discovery rejected (path, reason, first_seen, updated,
        run_id), by path; none for a catalog written before this table existed."""
        try:
            rows = self.conn.execute("SELECT * FROM rejected ORDER BY path").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [dict(r) for r in rows]

    def products(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM products", ()
        if kind:
            sql, args = sql + " WHERE kind = ?", (kind,)
        out = []
        for r in self.conn.execute(sql + " ORDER BY kind, name", args):
            d = dict(r)
            d["result"] = json.loads(d.pop("result_json") or "null")
            out.append(d)
        return out
