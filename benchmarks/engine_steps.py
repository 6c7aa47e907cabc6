"""What the engine did, step by step: a vLLM stat logger that records every engine step, and its
summary over a window of time (one policy's live run, the full generation).

`StepLog` is handed to `StreamEngine(stat_loggers=[log])`; vLLM calls it once per batch of
engine-core outputs (one engine step) in dp's event loop, with the step's scheduler counts and
tokens. `summary(t0, t1)` says where a window's wall time went: steps, the batch (requests
running, time-weighted), prompt tokens prefilled (computed and from the prefix cache), tokens
generated, and the seconds in which no step came (the engine was idle, waiting for dp). Used by
`bench_live.py`; measurement only, nothing in `dp` depends on it.
"""

from __future__ import annotations

import time

import numpy as np

FIELDS = ("t", "running", "waiting", "prompt_computed", "prompt_cached", "generated")


class StepLog:
    """Per-engine-step counts, appended by vLLM's stat-logger interface."""

    def __init__(self):
        self.rows: list[tuple] = []

    def __call__(self, vllm_config, engine_index: int = 0):  # vLLM's per-engine logger factory
        from vllm.v1.metrics.loggers import StatLoggerBase

        log = self

        class _Logger(StatLoggerBase):
            def __init__(self, *a, **k):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                if scheduler_stats is None and iteration_stats is None:
                    return
                it = iteration_stats
                log.rows.append((
                    it.iteration_timestamp if it is not None else time.time(),
                    scheduler_stats.num_running_reqs if scheduler_stats else -1,
                    scheduler_stats.num_waiting_reqs if scheduler_stats else -1,
                    it.prompt_token_stats.computed if it else 0, it.prompt_token_stats.cached_tokens if it else 0,
                    it.num_generation_tokens if it else 0))

            def log_engine_initialized(self):
                pass

        return _Logger()

    def table(self) -> dict[str, np.ndarray]:
        a = np.array(self.rows, dtype=np.float64).reshape(-1, len(FIELDS))
        return {f: a[:, i] for i, f in enumerate(FIELDS)}

    def summary(self, t0: float, t1: float) -> dict:
        """The steps with a timestamp in [t0, t1] (Unix seconds). A step's time is the gap since the one
        before it; a gap after a step that left the engine empty (nothing running or waiting) is idle:
        the engine waited for dp to send work."""
        tab = self.table()
        at = np.flatnonzero((tab["t"] >= t0) & (tab["t"] <= t1))
        if at.size == 0:
            return {"steps": 0}
        dt = np.diff(np.concatenate([[t0], tab["t"][at]]))
        before = np.concatenate([[-1], at[:-1]])  # the step before each (-1: the window's start)
        prev = np.maximum(before, 0)
        empty = (before >= 0) & (tab["running"][prev] == 0) & (tab["waiting"][prev] == 0)
        busy = ~empty
        run, gen = tab["running"][at], tab["generated"][at]
        busy_s = float(dt[busy].sum())
        return {
            "steps": int(at.size), "seconds": t1 - t0, "busy_seconds": busy_s, "idle_seconds": float(dt[empty].sum()),
            "step_seconds_median": float(np.median(dt[busy])) if busy.any() else None,
            "running_mean": float((run[busy] * dt[busy]).sum() / busy_s) if busy_s else 0.0,
            "waiting_mean": float((tab["waiting"][at][busy] * dt[busy]).sum() / busy_s) if busy_s else 0.0,
            "prompt_tokens_computed": int(tab["prompt_computed"][at].sum()),
            "prompt_tokens_cached": int(tab["prompt_cached"][at].sum()),
            "generated_tokens": int(gen.sum()),
            "busy_ms_per_generated_token": 1e3 * busy_s / gen.sum() if gen.sum() else None,
        }


def cost_model(profiles: dict[str, dict]) -> dict:
    """Least squares over the windows' summaries: busy seconds = a x steps + b x tokens generated
    + c x prompt tokens computed. Per window, what the fit predicts and what it leaves unexplained
    (busy seconds the engine's own work does not account for: the cores taken by something else)."""
    names = [n for n, p in profiles.items() if p.get("steps")]
    a = np.array([[profiles[n]["steps"], profiles[n]["generated_tokens"], profiles[n]["prompt_tokens_computed"]]
                  for n in names], dtype=np.float64)
    y = np.array([profiles[n]["busy_seconds"] for n in names])
    if len(names) < 3:
        return {}
    coef = np.linalg.lstsq(a, y, rcond=None)[0]
    fit = a @ coef
    return {"seconds_per_step": float(coef[0]), "seconds_per_generated_token": float(coef[1]),
            "seconds_per_prompt_token_computed": float(coef[2]),
            "windows": {n: {"predicted_busy_seconds": float(f), "unexplained_seconds": float(b - f)}
                        for n, f, b in zip(names, fit, y, strict=True)}}
