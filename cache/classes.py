"""Answer classes inside the write: the classes and correctness of a problem's traces.

A mixin of `Cache`, called in the same transaction that writes traces, so a stored trace always
carries its class. Equivalence and correctness are `dp.answers`'; this only stores them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from dp import answers as ans
from dp.errors import DPError


class AnswerClasses:
    """`Cache.assign_classes`: recompute the answer classes of some problems of a run."""

    def assign_classes(self, run: str, problem_ids: Sequence[str],
                       given: dict[str, np.ndarray] | None = None) -> None:
        """Recompute answer classes and correctness of the given problems, in index order.

        `given`: {problem_id: (n,) classes of its stored answers in index order}, computed
        elsewhere (e.g. with a time limit, `dp.grading`); used instead of grouping here."""
        problems = {p.problem_id: p for p in self.problems(run, problem_ids)}
        updates = []
        for pid in problem_ids:
            p = problems[pid]
            rows = self.con.execute(
                "SELECT trace_id, answer FROM traces WHERE run = ? AND problem_id = ? ORDER BY idx",
                [run, pid],
            ).fetchall()
            answers = [a for _, a in rows]
            if given is not None and pid in given:
                classes = np.asarray(given[pid], dtype=np.int32)
                if classes.shape != (len(rows),):
                    raise DPError(f"{len(classes)} answer classes given for {len(rows)} traces of problem {pid!r}")
            else:
                classes = ans.group_answers(answers, p.kind)
            class_ok: dict[int, bool | None] = {}
            for c, a in zip(classes, answers, strict=True):
                if int(c) not in class_ok:
                    class_ok[int(c)] = False if c < 0 else ans.is_correct(a, p.gold, p.kind)
            updates += [(int(c), class_ok[int(c)], tid) for (tid, _), c in zip(rows, classes, strict=True)]
        if updates:
            self.insert_arrow("_cls_updates", pa.table({
                "cls": pa.array([u[0] for u in updates], pa.int32()),
                "ok": pa.array([u[1] for u in updates], pa.bool_()),
                "tid": pa.array([u[2] for u in updates], pa.int32()),
            }), create=True)
            self.con.execute(
                "UPDATE traces SET answer_class = u.cls, correct = u.ok FROM _cls_updates u "
                "WHERE traces.trace_id = u.tid"
            )
            self.con.execute("DROP TABLE _cls_updates")

