"""Fault injection: kills, interrupts, a reader during a writer, failed commands, bad input.

The fast tests use real processes and real DuckDB files but no engine; the slow
ones start `dp generate` and `dp live` on the embedded model (3 problems x 4
traces, 64 tokens) and kill or interrupt them mid-run: no engine process of
theirs may survive (dp generate's engine runs in its own process on the CPU build), the data must stay consistent, and running the same command
again must complete to exactly N traces per problem, the very tokens of an
uninterrupted run (conftest's `gsm_reference`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dp.cache.store import Cache
from tests.conftest import GSM, invoke, run_tokens
from tests.proc_helpers import DP, Proc, alive, kill_leftovers, wait_gone

QWEN = "qwen25math_math_cot_100.jsonl"


def _no_exception_name(text: str) -> bool:
    return not any(w in text for w in ("Traceback", "Error:", "Exception", "UnicodeDecodeError"))


# ------------------------------------------------------------------ no engine needed

def test_watchdog_ends_the_children_of_a_killed_process(tmp_path):
    """A process guarded by the watchdog is SIGKILLed: its child (here a sleeping process
    standing in for the EngineCore) is ended within seconds."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        from dp.generate.watchdog import guard_engines
        guard_engines()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print(child.pid, flush=True)
        time.sleep(300)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    from dp.generate.watchdog import _stat

    start = _stat(child)[1]
    time.sleep(1.5)  # the watchdog looks every 0.5 s
    parent.kill()
    parent.wait()
    left = wait_gone({child: start}, timeout=10)
    kill_leftovers({child: start})
    assert left == [], "the child outlived its SIGKILLed parent"


_SIGINT_BIT = 1 << (signal.SIGINT - 1)


def _sigint_blocked(tmp_path, body: str) -> list[bool]:
    """Run a script (`body`, which may call `blocked()` in any process and print what it returns)
    and say, for each number it printed, whether SIGINT was blocked there."""
    script = tmp_path / "masks.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing as mp

        def blocked():
            return int([ln for ln in open("/proc/self/status") if ln.startswith("SigBlk")][0].split()[1], 16)
    """) + textwrap.dedent(body))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [bool(int(x) & _SIGINT_BIT) for x in r.stdout.split()]


def test_spawned_engine_processes_do_not_see_ctrl_c(tmp_path):
    """Processes spawned (as vLLM spawns EngineCore and Worker) by a program that imports dp
    have SIGINT blocked, the spawner not; so a terminal's Ctrl-C reaches only dp."""
    main, child, grandchild = _sigint_blocked(tmp_path, """
        import dp.interrupts  # noqa: F401

        def grandchild(q):
            q.put(blocked())

        def child(q):
            q.put(blocked())
            p = mp.get_context("spawn").Process(target=grandchild, args=(q,), name="Worker")
            p.start(); p.join()

        if __name__ == "__main__":
            q = mp.get_context("spawn").Queue()
            p = mp.get_context("spawn").Process(target=child, args=(q,), name="EngineCore")
            p.start(); p.join()
            print(blocked(), q.get(), q.get())
    """)
    assert not main and child and grandchild


def test_processes_started_by_an_engine_begin_without_ctrl_c_whatever_the_main_module(tmp_path):
    """`python -m dp.cli` is a package's __main__, which spawn does not re-import in the engine's
    processes: they are shielded by the mask `shielded_children()` holds while the engine starts
    (inherited through fork and exec), not by re-importing dp. After the block, the starter's own
    mask is as it was."""
    main, child = _sigint_blocked(tmp_path, """
        def child(q):
            q.put(blocked())

        if __name__ == "__main__":  # dp is imported here only: the spawned child never imports it
            from dp.interrupts import shielded_children

            q = mp.get_context("spawn").Queue()
            with shielded_children():
                p = mp.get_context("spawn").Process(target=child, args=(q,), name="EngineCore")
                p.start()
            p.join()
            print(blocked(), q.get())
    """)
    assert not main and child


def test_reader_waits_for_a_writer_then_reads(tmp_path, data_dir):
    cache = tmp_path / "c.duckdb"
    r = invoke("import", data_dir / "traces" / QWEN, "--format", "qwen-math", "--run", "q", "--cache", cache)
    assert r.exit_code == 0, r.output
    # a second process holds the write lock for 4 s
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from dp.cache.store import Cache
        with Cache({str(cache)!r}, write=True):
            print("locked", flush=True)
            time.sleep(4)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    t0 = time.time()
    r = subprocess.run([*DP, "cache", "info", "--cache", str(cache), "--json"], capture_output=True, text=True,
                       env={**os.environ, "DP_LOCK_WAIT": "30"}, timeout=120)
    holder.wait()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runs"][0]["traces"] == 800
    assert time.time() - t0 > 3.5  # it met the lock and waited for its release
    # with no patience: one line, exit 2
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from dp.cache.store import Cache
        with Cache({str(cache)!r}, write=True):
            print("locked", flush=True)
            time.sleep(5)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    r = subprocess.run([*DP, "cache", "info", "--cache", str(cache)], capture_output=True, text=True,
                       env={**os.environ, "DP_LOCK_WAIT": "0.5"}, timeout=120)
    holder.kill()
    holder.wait()
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "locked by another process" in r.stderr, r.stderr


def test_failed_commands_leave_nothing_behind(tmp_path, data_dir):
    missing = tmp_path / "missing.duckdb"
    for args in (("simulate", "--cache", missing, "--run", "x"),
                 ("simulate", "--cache", missing, "--no-store"),
                 ("cache", "info", "--cache", missing),
                 ("figures", "--cache", missing, "--out", tmp_path / "figs")):
        r = invoke(*args)
        assert r.exit_code != 0, (args, r.output)
    assert sorted(os.listdir(tmp_path)) == []
    # a real cache, a figure run of an unknown run: no output folder
    cache = tmp_path / "c.duckdb"
    assert invoke("import", data_dir / "traces" / QWEN, "--format", "qwen-math", "--run", "q",
                  "--cache", cache).exit_code == 0
    r = invoke("figures", "--cache", cache, "--run", "nosuch", "--out", tmp_path / "figs", "--orders", "2")
    assert r.exit_code != 0 and not (tmp_path / "figs").exists(), r.output
    # merge: a bad input leaves no --out file, a quote in a path is fine
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"\x00\xff" * 100)
    r = invoke("cache", "merge", str(cache), str(junk), "--out", tmp_path / "merged.duckdb")
    assert r.exit_code == 2 and not (tmp_path / "merged.duckdb").exists(), r.output
    quoted = tmp_path / "it's.duckdb"
    r = invoke("cache", "merge", str(cache), "--out", quoted, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"runs": 1, "traces": 800}
    # import into a new file in a new folder, failing on a bad line: neither is left
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "traces": ["a"]}\nnot json\n')
    r = invoke("import", bad, "--run", "b", "--cache", tmp_path / "new" / "c.duckdb")
    assert r.exit_code == 2 and not (tmp_path / "new").exists(), r.output


def test_bad_inputs_name_the_file_and_line_and_exit_2(tmp_path):
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b'{"question": "1+1", "traces": ["2"]}\n' + bytes(range(128, 256)) * 4 + b"\n")
    cache = tmp_path / "c.duckdb"
    r = invoke("import", garbage, "--run", "g", "--cache", cache)
    assert r.exit_code == 2, r.output
    assert f"{garbage}:2:" in r.output and _no_exception_name(r.output), r.output
    r = invoke("generate", "--data", garbage, "--cache", cache)
    assert r.exit_code == 2 and f"{garbage}:" in r.output and _no_exception_name(r.output), r.output
    csv = tmp_path / "gpqa.csv"
    csv.write_bytes(b"Question,Correct Answer\n" + b"\xff\xfe\x00" * 10)
    r = invoke("generate", "--data", csv, "--cache", cache)
    assert r.exit_code == 2 and f"{csv}:2:" in r.output and _no_exception_name(r.output), r.output
    for args in (("import", garbage, "--run", ""), ("generate", "--run", " "), ("cache", "info", "--run", ""),
                 ("live", "--run", "")):
        r = invoke(*args, "--cache", cache)
        assert r.exit_code == 2 and "run names must not be empty" in r.output, (args, r.output)
    assert not cache.exists()


def test_bytes_per_token_is_per_run_and_the_file_figure_is_labelled(tmp_path, data_dir):
    cache = tmp_path / "c.duckdb"
    for run, name, fmt in (("q", QWEN, "qwen-math"),):
        assert invoke("import", data_dir / "traces" / name, "--format", fmt, "--run", run,
                      "--cache", cache).exit_code == 0
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"problem_id": f"p{i}", "question": f"{i}+1", "gold": str(i + 1),
                                         "traces": [f"The answer is {i + 1}."] * 3}) + "\n" for i in range(20)))
    assert invoke("import", small, "--run", "s", "--cache", cache).exit_code == 0
    r = invoke("cache", "info", "--cache", cache, "--json")
    rows = {row["run"]: row for row in json.loads(r.output)["runs"]}
    size = cache.stat().st_size
    q, s = rows["q"], rows["s"]
    assert q["file_bytes_per_token"] == s["file_bytes_per_token"] == pytest.approx(size / (q["tokens"] + s["tokens"]))
    assert q["bytes_per_token"] != s["bytes_per_token"]
    # the runs' shares add up to no more than the file
    assert 0 < q["bytes_per_token"] * q["tokens"] + s["bytes_per_token"] * s["tokens"] <= size
    assert q["bytes_per_token"] < q["file_bytes_per_token"]
    text = invoke("cache", "info", "--cache", cache).output
    assert "bytes per token over all runs" in text


# ------------------------------------------------------------------ the real engine

# the shared reference run's command (conftest.GSM) in batches of two traces: the run takes long enough
# (6 batches) that a reader and a Ctrl-C reliably land in the middle of it, also on a quiet machine
GEN = [*GSM, "--batch", "2"]


def _keys(cache) -> list[tuple[str, int]]:
    with Cache(cache, wait=30) as c:
        return sorted((p.problem.problem_id, int(i)) for p in c.load_run("r") for i in p.index)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, data_dir):
    """`dp generate` interrupted by SIGINT, then killed by SIGKILL, then completed."""
    cache = tmp_path_factory.mktemp("faults") / "g.duckdb"
    report = {}
    # 1. Ctrl-C (SIGINT to the whole process group) after the first batch, while `dp cache info` watches
    p = Proc("generate", "--cache", cache, *GEN)
    engines = {}
    try:
        assert p.wait_for(r"\b2/12\b"), p.text[-3000:]
        engines = p.engines()
        info = subprocess.run([*DP, "cache", "info", "--cache", str(cache), "--json"], capture_output=True,
                              text=True, timeout=120)
        report["info_rc"], report["info"] = info.returncode, info.stdout + info.stderr
        os.killpg(p.p.pid, signal.SIGINT)
        report["int_rc"] = p.finish()
        report["int_stderr"] = "".join(p.err)
        report["int_left"] = wait_gone(engines, timeout=15)
        report["int_engines"] = len(engines)
        report["int_keys"] = len(_keys(cache))
        # 2. the same command, SIGKILL to dp alone after its next batch
        p = Proc("generate", "--cache", cache, *GEN)
        assert p.wait_for(r"\b2/\d+\b"), p.text[-3000:]
        engines = p.engines()
        p.p.kill()
        p.finish()
        report["kill_engines"] = len(engines)
        report["kill_left"] = wait_gone(engines, timeout=15)
        report["kill_keys"] = len(_keys(cache))
        # 3. the same command again completes the run
        p = Proc("generate", "--cache", cache, *GEN, "--no-progress", "--json")
        report["final_rc"] = p.finish(timeout=600)
        report["final_out"] = "".join(p.out)
        report["final_keys"] = _keys(cache)
    finally:
        kill_leftovers(engines)
        if p.p.poll() is None:
            p.p.kill()
    return cache, report


@pytest.mark.slow
def test_generate_interrupted_then_killed_then_resumed(generated, gsm_reference):
    cache, rep = generated
    # a reader during the writer: `dp cache info` saw the first batch
    assert rep["info_rc"] == 0, rep["info"]
    assert json.loads(rep["info"])["runs"][0]["traces"] >= 2
    # SIGINT: one line, exit 130, engines shut down, the finished batches kept
    assert rep["int_rc"] == 130, rep["int_stderr"][-3000:]
    lines = [ln for ln in rep["int_stderr"].replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[-1] == "error: interrupted" and _no_exception_name(rep["int_stderr"]), rep["int_stderr"][-3000:]
    # on the CPU build the engine core runs inside dp generate (in_process_on_cpu): no engine process
    # to outlive it (dp live's engine processes are checked below)
    assert rep["int_engines"] == 0 and rep["int_left"] == []
    assert 2 <= rep["int_keys"] < 12
    # SIGKILL of dp: nothing half-written, no process of it left
    assert rep["kill_engines"] == 0 and rep["kill_left"] == [], "a process outlived a SIGKILLed dp generate"
    assert rep["int_keys"] < rep["kill_keys"] <= 12
    # resume: exactly N = 4 traces for each of the 3 problems, each once
    assert rep["final_rc"] == 0, rep["final_out"]
    keys = rep["final_keys"]
    assert len(keys) == 12 == len(set(keys)) and sorted({i for _, i in keys}) == [0, 1, 2, 3]
    assert json.loads(rep["final_out"])["run_traces"] == 12
    # and they are the very tokens of the uninterrupted run (one batch, never stopped): fp32 seeded
    # sampling does not depend on what else is in the batch, nor on where a run was cut
    assert run_tokens(cache, "r") == run_tokens(gsm_reference[0], "r")


LIVE = ["--run", "r", "--policy", "cons", "--truncate", "tokens:4", "--limit", "3", "--live-run", "lv",
        "--max-problems-in-flight", "1"]  # one problem at a time, so the kill lands between two stored problems


@pytest.mark.slow
def test_live_killed_then_interrupted_then_resumed(generated):
    cache, rep = generated
    if rep.get("final_rc") != 0:
        pytest.skip("the reference run was not generated")
    engines = {}
    p = Proc("live", "--cache", cache, *LIVE)
    try:
        # SIGKILL after the first problem is stored
        assert p.wait_for(r"\[1/3\]"), p.text[-3000:]
        engines = p.engines()
        p.p.kill()
        p.finish()
        assert engines and wait_gone(engines, timeout=15) == [], "an engine outlived a SIGKILLed dp live"
        with Cache(cache) as c:
            assert c.run_info("lv")["settings"]["complete"] is False
            assert len(c.load_run("lv")) == 1
        # the same command resumes; Ctrl-C after its next problem
        p = Proc("live", "--cache", cache, *LIVE)
        assert p.wait_for(r"\[2/3\]"), p.text[-3000:]
        assert "1 of 3 problems already done" in p.text
        engines = p.engines()
        os.killpg(p.p.pid, signal.SIGINT)
        rc = p.finish()
        err = "".join(p.err)
        assert rc == 130 and err.strip().splitlines()[-1] == "error: interrupted", err[-3000:]
        assert _no_exception_name(err), err[-3000:]
        assert wait_gone(engines, timeout=15) == []
        # and again: the last problem only, then the run is complete with 3 x 4 traces
        p = Proc("live", "--cache", cache, *LIVE, "--json")
        assert p.finish(timeout=600) == 0, p.text[-3000:]
        out = json.loads("".join(p.out))
        assert out["problems"] == 3
        with Cache(cache) as c:
            assert c.run_info("lv")["settings"]["complete"] is True
            per = {pt.problem.problem_id: pt.n for pt in c.load_run("lv")}
            assert sorted(per.values()) == [4, 4, 4]
    finally:
        kill_leftovers(engines)
        if p.p.poll() is None:
            p.p.kill()
    assert alive(engines) == []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_ends_with_one_line_and_128_plus_signal(tmp_path, data_dir, sig, code):
    """A command waiting on a locked cache is interrupted: `error: interrupted`, exit 130 / 143."""
    cache = tmp_path / "c.duckdb"
    assert invoke("import", data_dir / "traces" / QWEN, "--format", "qwen-math", "--run", "q",
                  "--cache", cache).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from dp.cache.store import Cache
        with Cache({str(cache)!r}, write=True):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = Proc("cache", "info", "--cache", cache, env={"DP_LOCK_WAIT": "60"})
        time.sleep(4)  # started and retrying
        assert p.p.poll() is None
        os.killpg(p.p.pid, sig)
        assert p.finish(timeout=30) == code
        assert "".join(p.err).strip().splitlines() == ["error: interrupted"]
    finally:
        holder.kill()
        holder.wait()


def test_an_interrupt_a_library_turns_into_its_own_error_still_ends_as_an_interrupt(tmp_path):
    """Ctrl-C while DuckDB pulls an Arrow stream (as a cache write does): DuckDB catches the
    KeyboardInterrupt and raises InvalidInputException; the command still ends with
    `error: interrupted` and exit 130, and the transaction is rolled back (nothing half-written)."""
    db = tmp_path / "w.duckdb"
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, click, duckdb, pyarrow as pa
        from dp.cli import DPGroup

        @click.group(cls=DPGroup)
        def g():
            pass

        @g.command()
        def write():
            schema = pa.schema([("x", pa.int64())])
            def batches():
                yield pa.record_batch([pa.array([1])], schema=schema)
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while DuckDB reads the stream
                yield pa.record_batch([pa.array([2])], schema=schema)
            con = duckdb.connect({str(db)!r})
            con.execute("create table t (x bigint)")
            con.execute("begin")
            con.register("_arrow_in", pa.RecordBatchReader.from_batches(schema, batches()))
            con.execute("insert into t select * from _arrow_in")
            con.execute("commit")

        g.main(["write"], prog_name="dp")
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines() == ["error: interrupted"]
    import duckdb

    assert duckdb.connect(str(db), read_only=True).execute("select count(*) from t").fetchone() == (0,)

