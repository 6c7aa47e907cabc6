"""Reading traces back: a run's problems as arrays, per-token columns, texts and prefixes.

A mixin of `Cache` (`cache.load_run`, `cache.token_arrays`, `cache.texts`, `cache.prefix_texts`);
read-only, in bulk, as numpy. Prefixes by token offsets without decoding: `dp.cache.offsets`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from dp.cache.records import ProblemTraces
from dp.errors import DPError


class TraceReads:
    """Methods of `Cache` that read traces."""

    def load_run(self, run: str) -> list[ProblemTraces]:
        """Every problem of a run with its traces as arrays (problems without traces are left out)."""
        self.run_info(run)  # raises a clear error for an unknown run
        problems = {p.problem_id: p for p in self.problems(run)}
        tbl = self.con.sql(
            "SELECT problem_id, trace_id, idx, n_tokens, answer, answer_class, correct, finish_reason, seed "
            "FROM traces WHERE run = ? ORDER BY problem_id, idx", params=[run],
        ).to_arrow_table()
        cols = {name: tbl.column(name).to_pylist() for name in tbl.column_names}
        out: list[ProblemTraces] = []
        pids = np.array(cols["problem_id"], dtype=object)
        if len(pids) == 0:
            return out
        bounds = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            sl = slice(int(a), int(b))
            out.append(ProblemTraces(
                problem=problems[pids[a]],
                trace_ids=np.array(cols["trace_id"][sl], dtype=np.int64),
                index=np.array(cols["idx"][sl], dtype=np.int32),
                lengths=np.array(cols["n_tokens"][sl], dtype=np.int32),
                answers=cols["answer"][sl],
                classes=np.array([-1 if c is None else c for c in cols["answer_class"][sl]], dtype=np.int32),
                correct=np.array([bool(c) for c in cols["correct"][sl]], dtype=bool),
                finish=cols["finish_reason"][sl],
                seeds=np.array([-1 if s is None else s for s in cols["seed"][sl]], dtype=np.int64),
            ))
        return out

    def token_arrays(self, trace_ids: Sequence[int], column: str = "token_id") -> list[np.ndarray]:
        """Per-token values of `column` for each trace id, in the order given.

        Missing values (imported traces have no log-probs) come back as NaN for
        float columns; callers decide what missing means.
        """
        if column not in ("token_id", "logprob", "confidence", "end_offset"):
            raise DPError(f"unknown token column {column!r}")
        ids = np.asarray(trace_ids, dtype=np.int64)
        if ids.size == 0:
            return []
        self.insert_arrow("_want", pa.table({"tid": pa.array(ids, pa.int64())}), create=True, temp=True)
        tbl = self.con.sql(
            f"SELECT t.trace_id, t.{column} AS v FROM tokens t JOIN _want w ON t.trace_id = w.tid "
            "ORDER BY t.trace_id, t.pos"
        ).to_arrow_table()
        self.con.execute("DROP TABLE _want")
        tid = tbl.column("trace_id").to_numpy()
        vals = tbl.column("v").to_numpy(zero_copy_only=False)
        if column in ("logprob", "confidence"):
            vals = np.asarray(vals, dtype=np.float32)
        starts = np.searchsorted(tid, ids)
        ends = np.searchsorted(tid, ids, side="right")
        return [vals[s:e] for s, e in zip(starts, ends, strict=True)]

    def texts(self, trace_ids: Sequence[int]) -> list[str]:
        """Full texts of traces, in the order given."""
        ids = [int(t) for t in trace_ids]
        rows = dict(self.con.execute(
            "SELECT trace_id, text FROM traces WHERE trace_id IN (SELECT unnest(?))", [ids]
        ).fetchall())
        return [rows[t] for t in ids]

    def prefix_texts(self, trace_ids: Sequence[int], n_tokens: Sequence[int]) -> list[str]:
        """The text of each trace up to and including its first `n_tokens` tokens (from the offsets)."""
        texts = self.texts(trace_ids)
        offsets = self.token_arrays(trace_ids, "end_offset")
        out = []
        for text, off, k in zip(texts, offsets, n_tokens, strict=True):
            k = int(min(k, len(off)))
            out.append(text[: int(off[k - 1])] if k > 0 else "")
        return out
