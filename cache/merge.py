"""Join cache files (e.g. the shards of `dp generate --shard i/n`) into one.

Runs with the same name must have the same settings; their traces are unioned
by (run, problem, index), the first file winning on duplicates. Trace ids are
renumbered; token rows follow their traces. Judge scores and simulator points
are not copied (they are recomputed on demand). One transaction per input file.
Every input is checked before `out` is touched, and an `out` created by a merge
that then fails is removed again. Paths reach SQL as quoted string literals.
"""

from __future__ import annotations

from pathlib import Path

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError


def sql_string(text: str) -> str:
    """`text` as a SQL string literal (for ATTACH, which takes no bound parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def merge(out: str | Path, inputs: list[str | Path]) -> dict:
    """Merge `inputs` into the cache at `out` (created if missing); returns counts added."""
    added = {"runs": 0, "traces": 0}
    for src_path in inputs:  # validates: exists and is a dp cache of a readable version
        if Path(src_path).resolve() == Path(out).resolve():
            raise DPError(f"{src_path} is also the --out file")
        with Cache(src_path):
            pass
    with Cache(out, write=True) as dst:
        for i, src_path in enumerate(inputs):
            alias = f"src{i}"
            dst.con.execute(f"ATTACH {sql_string(Path(src_path).as_posix())} AS {alias} (READ_ONLY)")
            try:
                with dst.transaction():
                    for row in dst.con.execute(f"SELECT run FROM {alias}.runs").fetchall():
                        run = row[0]
                        if dst.has_run(run):
                            _check_same(dst, alias, run)
                        else:
                            dst.con.execute(f"INSERT INTO runs SELECT * FROM {alias}.runs WHERE run = ?", [run])
                            added["runs"] += 1
                        dst.con.execute(
                            f"INSERT OR IGNORE INTO problems SELECT * FROM {alias}.problems WHERE run = ?", [run])
                    base = dst.con.execute("SELECT coalesce(max(trace_id), 0) FROM traces").fetchall()[0][0]
                    dst.con.execute(f"""
                        CREATE TEMP TABLE _new AS
                        SELECT s.trace_id AS old_id, {base} + row_number() OVER (ORDER BY s.trace_id) AS new_id
                        FROM {alias}.traces s
                        WHERE NOT EXISTS (SELECT 1 FROM traces d WHERE d.run = s.run
                                          AND d.problem_id = s.problem_id AND d.idx = s.idx)""")
                    dst.con.execute(f"""INSERT INTO traces SELECT n.new_id, s.* EXCLUDE (trace_id)
                        FROM {alias}.traces s JOIN _new n ON s.trace_id = n.old_id""")
                    dst.con.execute(f"""INSERT INTO tokens SELECT n.new_id, s.* EXCLUDE (trace_id)
                        FROM {alias}.tokens s JOIN _new n ON s.trace_id = n.old_id""")
                    dst.con.execute(f"""INSERT INTO topk SELECT n.new_id, s.* EXCLUDE (trace_id)
                        FROM {alias}.topk s JOIN _new n ON s.trace_id = n.old_id""")
                    added["traces"] += dst.con.execute("SELECT count(*) FROM _new").fetchall()[0][0]
                    touched = dst.con.execute(
                        f"SELECT DISTINCT run, problem_id FROM {alias}.traces").fetchall()
                    dst.con.execute("DROP TABLE _new")
                    by_run: dict[str, list[str]] = {}
                    for run, pid in touched:
                        by_run.setdefault(run, []).append(pid)
                    for run, pids in by_run.items():
                        dst.assign_classes(run, sorted(pids))
            finally:
                dst.con.execute(f"DETACH {alias}")
    return added


def _check_same(dst: Cache, alias: str, run: str) -> None:
    cur = dst.con.execute(f"SELECT * FROM {alias}.runs WHERE run = ?", [run])
    import json

    row = dict(zip([d[0] for d in cur.description], cur.fetchall()[0], strict=True))
    for k in ("sampling", "settings"):
        row[k] = json.loads(row[k]) if row[k] else {}
    theirs = RunInfo(**{k: row[k] for k in RunInfo.__dataclass_fields__})
    mine_row = dst.run_info(run)
    mine = RunInfo(**{k: mine_row[k] for k in RunInfo.__dataclass_fields__})
    if theirs.identity() != mine.identity():
        raise DPError(f"run '{run}' has different settings in {alias}; cannot merge")
