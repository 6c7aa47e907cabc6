"""A live problem stored and read back: its started traces, per-trace decisions and its summary.

`store_problem` writes one problem of a `dp live` run (or one `dp serve` request) in one
transaction: the traces that started (`stored_records`), a `live_traces` row per trace
(arrival rank, decision `finish` / `prune` / `skip`, tokens) and, in the run's settings, its
summary. `read_problem` rebuilds the `ProblemLive` of a stored problem, which is what resuming
an interrupted live run needs. No engine and no policy here.
"""

from __future__ import annotations

import numpy as np

from dp.cache.live import read_live_rows, write_live_rows
from dp.cache.store import Cache
from dp.simulate.live.problem import ProblemLive


def _decision(live: ProblemLive, t: int) -> str:
    if live.finished[t]:
        return "finish"
    return "skip" if live.started is not None and not live.started[t] else "prune"


def stored_records(live: ProblemLive) -> list:
    """The TraceRecords of a live problem that are stored as traces: those that started."""
    if live.started is None:
        return list(live.records)
    return [r for r in live.records if live.started[r.index]]


def live_summary(live: ProblemLive) -> dict:
    """What is kept of one problem's live run besides its traces and decisions."""
    return {"correct": None if live.correct is None else bool(live.correct), "seconds": live.seconds,
            "judge_seconds": live.judge_seconds, "judge_pairs": live.judge_pairs}


def store_problem(cache: Cache, run: str, live: ProblemLive, wall: float | None = None,
                  classes: np.ndarray | None = None, summary: bool = True) -> None:
    """One problem's live traces, decisions and (with `summary`, in the run's settings) summary, in one
    transaction (`classes`: the answer classes of its stored traces (`stored_records`) by index, when
    computed already)."""
    rank = {t: i for i, t in enumerate(live.arrival)}
    n = len(live.records)
    with cache.transaction():
        cache.write_traces(run, stored_records(live), None if classes is None else {live.problem_id: classes})
        write_live_rows(cache, run, live.problem_id, [rank.get(t, -1) for t in range(n)],
                        [_decision(live, t) for t in range(n)],
                        [int(x) for x in live.decision_token], [int(x) for x in live.tokens])
        if not summary:
            return
        settings = cache.run_info(run)["settings"]
        settings.setdefault("done", {})[live.problem_id] = live_summary(live)
        if wall is not None:
            settings["live_wall"] = wall
        cache.update_run_settings(run, settings)


def read_problem(cache: Cache, run: str, problem_id: str, summary: dict) -> ProblemLive:
    """A stored problem of an interrupted live run, as the ProblemLive that produced it."""
    from dp.types import FinishReason, TraceRecord

    pt = next(p for p in cache.load_run(run) if p.problem.problem_id == problem_id)
    rows = read_live_rows(cache, run, problem_id)
    texts = cache.texts(pt.trace_ids)
    ids = cache.token_arrays(pt.trace_ids, "token_id")
    offsets = cache.token_arrays(pt.trace_ids, "end_offset")
    stored = {int(i): TraceRecord(problem_id=problem_id, index=int(i), text=t, token_ids=k, offsets=o,
                                  seed=int(sd), finish_reason=FinishReason(f))
              for i, t, k, o, sd, f in zip(pt.index, texts, ids, offsets, pt.seeds, pt.finish, strict=True)}
    empty = np.zeros(0, dtype=np.int32)
    records = [stored.get(t) or TraceRecord(problem_id=problem_id, index=t, text="", token_ids=empty, offsets=empty,
                                            finish_reason=FinishReason.ABORT)  # never started: not stored
               for t in range(len(rows["decision"]))]
    arrived = np.flatnonzero(rows["arrival"] >= 0)
    return ProblemLive(
        problem_id=problem_id, records=records, arrival=[int(t) for t in arrived[np.argsort(rows["arrival"][arrived])]],
        decision_token=rows["decision_token"], finished=rows["decision"] == "finish", tokens=rows["tokens"],
        started=rows["decision"] != "skip", correct=None if summary["correct"] is None else bool(summary["correct"]),
        seconds=float(summary["seconds"]), judge_seconds=float(summary["judge_seconds"]), judge_pairs=int(summary["judge_pairs"]))
