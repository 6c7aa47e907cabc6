"""Simulator points for the figures: read from `sim_points`, computed through `simulate` when missing.

A figure names the points it needs as `PointSpec`s (run, policy, tau, judge,
truncation, orders, seed). `PointStore.get` looks each one up among the rows the
simulator stored; a row matches when it has the same policy, the same stored
params (what `dp.simulate.replay.sweep.simulate` writes: the policy's settings plus
judge and truncation for judged policies), orders, order kind and seed, was made
from the run's current traces (same problem count and cons@N tokens) and by this
dp version and git hash (in a modified checkout, "+dirty", edits made since a
point was stored go unseen: `--fresh` recomputes everything). Missing points are
computed by `simulate(...)` itself - the same call `dp simulate` makes, so the
numbers are those `dp simulate --json` prints - which stores them; then they are
read back from the table.

Nothing here draws, and no policy is replayed by any other path.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from dp.cache.store import Cache
from dp.errors import DPError
from dp.judge.truncation import TruncationRule
from dp.provenance import stamp
from dp.simulate.policies.registry import make_policy
from dp.simulate.replay.sweep import SimSettings, simulate


def _roundtrip(obj):
    return json.loads(json.dumps(obj, sort_keys=True))


@dataclass(frozen=True)
class PointSpec:
    """One simulator point a figure needs."""

    run: str
    policy: str
    tau: float  # DeepPrune's threshold (ignored by policies without one)
    judge: str
    truncate: str
    orders: int
    order_kind: str
    seed: int

    @property
    def group(self) -> tuple:
        """Points with the same group can come from one `simulate` call."""
        return (self.run, self.judge, self.truncate, self.orders, self.order_kind, self.seed)

    def stored_params(self) -> dict:
        """The params `simulate` stores for this point that identify it (a stored row has more:
        the judge's weight digest, whether it is in-sample)."""
        policy = make_policy(self.policy, tau=self.tau)
        params = {"accounting": "paper", **policy.params_dict}
        if policy.needs_judge:
            params.update(judge_arg=policy.judge_override or self.judge,
                          truncate=str(TruncationRule.parse(self.truncate)))
        return _roundtrip(params)

    @property
    def replay_order(self) -> tuple[str, int]:
        """(order kind, orders) the replay really uses: only prefix policies take prefix-length."""
        from dp.simulate.policies.base import PrefixPolicy

        if self.order_kind == "prefix-length" and isinstance(make_policy(self.policy), PrefixPolicy):
            return "prefix-length", 1
        return "random", self.orders

    def sim_settings(self, policies: tuple[str, ...], taus: list[float]) -> SimSettings:
        """The `simulate` settings that produce this point (and its group's other `policies`)."""
        sweep = ("tau=" + ",".join(repr(float(t)) for t in taus),) if len(taus) > 1 else ()
        return SimSettings(run=self.run, policies=policies, judge=self.judge, truncate=self.truncate,
                           orders=self.orders, order_kind=self.order_kind, seed=self.seed,
                           params={} if sweep else {"tau": float(taus[0])}, sweep=sweep)


class PointStore:
    """Reads simulator points of a cache, computing (and storing) the missing ones."""

    def __init__(self, cache: Cache, fresh: bool = False):
        self.cache = cache
        self.fresh = fresh  # accept only points computed by this store
        st = stamp()
        self.version = (st["dp_version"], st["git_hash"])
        self.reused = 0
        self.computed = 0
        self._mine: set = set()  # point ids computed here
        self._unstored: dict[str, list[dict]] = defaultdict(list)  # read-only cache: results kept here
        self._totals: dict[str, tuple[int, float]] = {}
        self._rows: dict[str, list[dict]] = {}

    # ------------------------------------------------------------- reading
    def totals(self, run: str) -> tuple[int, float]:
        """(problems with traces, cons@N tokens) of the run as it is now."""
        if run not in self._totals:
            problems = self.cache.load_run(run)
            self._totals[run] = (len(problems), float(sum(int(p.lengths.sum()) for p in problems)))
        return self._totals[run]

    def stored(self, run: str) -> list[dict]:
        """Every stored point of `run`: the stored result JSON plus point id and provenance."""
        if run not in self._rows:  # parsed once per run until this store computes new points
            rows = self.cache.con.execute(
                "SELECT point_id, result, dp_version, git_hash, created_at FROM sim_points "
                "WHERE run = ? ORDER BY point_id", [run]).fetchall()
            self._rows[run] = [{**json.loads(res), "point_id": int(pid), "dp_version": ver, "git_hash": gh,
                                "created_at": str(at)} for pid, res, ver, gh, at in rows]
        return self._rows[run] + self._unstored[run]

    def is_current(self, run: str, row: dict) -> bool:
        """Made from the run's current traces (same problems and cons@N tokens)."""
        problems, full = self.totals(run)
        return row.get("problems") == problems and row.get("full_tokens") == full

    def _match(self, rows: list[dict], spec: PointSpec) -> dict | None:
        params = spec.stored_params()
        kind, orders = spec.replay_order
        best = None
        for row in rows:
            if (row["policy"] == spec.policy and {k: row["params"].get(k) for k in params} == params
                    and row["orders"] == orders and row["order_kind"] == kind and row["seed"] == spec.seed
                    and self.is_current(spec.run, row) and (row["dp_version"], row["git_hash"]) == self.version
                    and (not self.fresh or row["point_id"] in self._mine or row["point_id"] is None)):
                best = row  # rows come in point order: the latest match wins
        return best

    # ----------------------------------------------------------- computing
    def get(self, specs: list[PointSpec]) -> list[dict]:
        """The point of each spec, in order; missing ones are computed through `simulate`."""
        rows_of = {run: self.stored(run) for run in {s.run for s in specs}}
        found = {s: self._match(rows_of[s.run], s) for s in specs}
        missing = [s for s in dict.fromkeys(specs) if found[s] is None]
        self.reused += len({s for s in specs if found[s] is not None})
        if missing:
            self._compute(missing)
            rows_of = {run: self.stored(run) for run in rows_of}
            for s in missing:
                found[s] = self._match(rows_of[s.run], s)
                if found[s] is None:
                    raise DPError(f"simulator point {s.policy} (tau {s.tau}) of run '{s.run}' "
                                  "was computed but cannot be found in sim_points")
        return [found[s] for s in specs]

    def _compute(self, missing: list[PointSpec]) -> None:
        """One `simulate` call per group and set of thresholds (a tau sweep where several);
        policies without a threshold ride along with any call of their group."""
        taus_of: dict[tuple, set] = defaultdict(set)
        for s in missing:
            taus_of[(s.group, s.policy)].add(float(s.tau))
        calls: dict[tuple, list[str]] = defaultdict(list)
        spec_of: dict[tuple, PointSpec] = {}
        free = [s for s in missing if "tau" not in make_policy(s.policy).params_dict]
        for s in missing:
            if s in free:
                continue
            key = (s.group, tuple(sorted(taus_of[(s.group, s.policy)])))
            if s.policy not in calls[key]:
                calls[key].append(s.policy)
            spec_of[key] = s
        for s in free:
            key = next((k for k in calls if k[0] == s.group), (s.group, (float(s.tau),)))
            if s.policy not in calls[key]:
                calls[key].append(s.policy)
            spec_of.setdefault(key, s)
        for key, policies in calls.items():
            settings = spec_of[key].sim_settings(tuple(policies), list(key[1]))
            before = self._max_id()
            results = simulate(self.cache, settings, store=self.cache.write)
            self._rows.pop(settings.run, None)
            self.computed += len(results)
            if self.cache.write:
                ids = self.cache.con.execute("SELECT point_id FROM sim_points WHERE point_id > ?",
                                             [before]).fetchall()
                self._mine.update(int(i) for (i,) in ids)
            else:
                dp_version, git_hash = self.version
                self._unstored[settings.run] += [
                    _roundtrip({**r.summary(), "per_problem": r.per_problem, "point_id": None,
                                "dp_version": dp_version, "git_hash": git_hash, "created_at": None})
                    for r in results]

    def _max_id(self) -> int:
        return int(self.cache.con.execute("SELECT coalesce(max(point_id), 0) FROM sim_points").fetchall()[0][0])


SUMMARY_KEYS = ("policy", "params", "tokens", "tokens_std", "full_tokens", "token_reduction", "accuracy",
                "accuracy_std", "pass_rate", "judge_pairs", "orders", "order_kind", "seed", "problems")


def summary_row(run: str, point: dict) -> dict:
    """A point as a table row: run, point id and the fields `dp simulate --json` prints."""
    return {"run": run, "point_id": point["point_id"], **{k: point[k] for k in SUMMARY_KEYS}}


def simulate_command(specs: list[PointSpec], cache_path: str = "CACHE") -> str:
    """The `dp simulate` call that prints the same numbers as `specs` (one group) with --json."""
    s = specs[0]
    policies = list(dict.fromkeys(x.policy for x in specs))
    taus = sorted({float(x.tau) for x in specs})
    parts = ["dp simulate", "--cache", cache_path, "--run", s.run, *sum((["--policy", p] for p in policies), []),
             "--judge", s.judge, "--truncate", s.truncate, "--orders", str(s.orders), "--order",
             s.order_kind, "--seed", str(s.seed)]
    parts += (["--sweep", "tau=" + ",".join(repr(t) for t in taus)] if len(taus) > 1
              else ["--tau", repr(taus[0])])
    return " ".join(parts + ["--json"])
