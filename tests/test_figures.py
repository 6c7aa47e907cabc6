"""`dp figures` on a small hand-built cache: every file, the report, skips, and the numbers
matching `dp simulate --json`."""

from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pytest

from dp.cache import Cache, RunInfo
from dp.types import AnswerKind, Problem, TraceRecord
from tests.conftest import invoke

DRAWN = ("redundancy", "roc", "truncation", "threshold", "main_table", "pareto")
ORDERS = 4
TRUNCATE = "words:4"  # short prefixes, so DeepPrune prunes on these short traces
STEPS = ("so", "wait", "therefore", "but", "thus", "hmm", "since")


def _offsets(text: str) -> np.ndarray:
    return np.array([m.end() for m in re.finditer(r"\S+", text)], dtype=np.int32)


def _trace(rng, pid: str, idx: int, answer: str, with_conf: bool) -> TraceRecord:
    """A fake trace: steps whose words lean on the answer, then the boxed answer."""
    words = [f"idea{answer}x{rng.integers(3)}" if rng.random() < 0.6 else f"w{rng.integers(40)}"
             for _ in range(int(rng.integers(30, 70)))]
    for k in range(0, len(words), 6):
        words[k] = STEPS[int(rng.integers(len(STEPS)))]
    text = f"Problem {pid}: " + " ".join(words) + f" so the answer is \\boxed{{{answer}}}"
    off = _offsets(text)
    conf = rng.uniform(0.5, 3.0, off.size).astype(np.float32) if with_conf else None
    return TraceRecord(problem_id=pid, index=idx, text=text, token_ids=np.arange(off.size, dtype=np.int32),
                       offsets=off, confidence=conf)


def build_cache(path, problems: int = 6, traces: int = 12) -> None:
    """Run 'conf' (with token confidences) and run 'plain' (none); gold answer 3 on most problems."""
    with Cache(path, write=True) as c:
        for run, with_conf, seed in (("conf", True, 1), ("plain", False, 2)):
            rng = np.random.default_rng(seed)
            c.create_run(RunInfo(run=run, model=f"model-{run}", engine="test", tokenizer="whitespace",
                                 source="test", dataset="test", n=traces))
            pids = [f"p{i}" for i in range(problems)]
            c.add_problems(run, [Problem("test", p, f"question {p}", "3", AnswerKind.EXPRESSION) for p in pids])
            records = []
            for j, pid in enumerate(pids):
                probs = [0.9, 0.05, 0.05] if j % 3 == 0 else [0.5, 0.3, 0.2]
                answers = rng.choice(["3", "5", "7"], size=traces, p=probs)
                records += [_trace(rng, pid, i, str(a), with_conf) for i, a in enumerate(answers)]
            c.write_traces(run, records)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("figures")
    cache = d / "c.duckdb"
    build_cache(cache)
    out = d / "out"
    r = invoke("figures", "--cache", cache, "--out", out, "--judge", "jaccard", "--orders", ORDERS,
               "--seed", 7, "--truncate", TRUNCATE, "--json")
    assert r.exit_code == 0, r.output
    return cache, out, json.loads(r.stdout)


def _report(out) -> dict:
    return json.loads((out / "figures.json").read_text())


def test_every_figure_is_drawn_as_png_and_pdf(made):
    _, out, printed = made
    for name in DRAWN:
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
        assert printed["figures"][name]["skipped"] is None
    assert not (out / "live.png").exists()


def test_report_shows_each_figure_with_its_numbers_and_provenance(made):
    _, out, _ = made
    md = (out / "report.md").read_text()
    data = _report(out)
    for name in DRAWN:
        fig = data["figures"][name]
        assert f"![{fig['title']}]({name}.png)" in md and f"({name}.pdf)" in md
        assert fig["rows"], name
    for title in ("redundancy", "ROC", "Truncation", "Threshold", "Main table", "Accuracy against tokens",
                  "Live against simulated"):
        assert title in md
    assert data["provenance"]["dp_version"] and "git_hash" in data["provenance"]
    assert data["settings"]["orders"] == ORDERS and data["settings"]["seed"] == 7
    assert data["runs"] == ["conf", "plain"] and "conf, plain" in md
    assert "| run | policy |" in md  # the main table's numbers are printed as a table


def test_live_figure_is_skipped_with_a_reason(made):
    _, out, _ = made
    live = _report(out)["figures"]["live"]
    assert live["skipped"] and "no live run" in live["skipped"]
    assert "**Skipped:** no live run" in (out / "report.md").read_text()


def test_deepconf_only_where_the_run_has_confidences(made):
    _, out, _ = made
    fig = _report(out)["figures"]["main_table"]
    policies = {(r["run"], r["policy"]) for r in fig["rows"]}
    assert {("conf", "deepconf-low"), ("conf", "deepconf-high")} <= policies
    assert not any(run == "plain" and p.startswith("deepconf") for run, p in policies)
    assert any("'plain'" in n and "DeepConf skipped" in n for n in fig["notes"])
    assert {("plain", p) for p in ("cons", "deepprune", "esc", "adaptive", "random", "deepprune-oracle")} <= policies


def test_judge_figures_have_auroc_per_judge(made):
    _, out, _ = made
    data = _report(out)
    roc = {(r["run"], r["judge"]): r["auroc"] for r in data["figures"]["roc"]["rows"]}
    assert roc[("conf", "oracle")] == 1.0 and roc[("plain", "oracle")] == 1.0
    assert ("conf", "jaccard") in roc and ("conf", "random") in roc
    rules = {r["rule"] for r in data["figures"]["truncation"]["rows"]}
    assert {"tokens:25", "tokens:500", "words:5", "words:50"} <= rules


KEYS = ("policy", "params", "tokens", "tokens_std", "full_tokens", "token_reduction", "accuracy",
        "accuracy_std", "pass_rate", "judge_pairs", "orders", "seed", "problems")


def _simulate(cache, *args) -> list[dict]:
    r = invoke("simulate", "--cache", cache, "--judge", "jaccard", "--orders", ORDERS, "--seed", 7,
               "--truncate", TRUNCATE, "--no-store", "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_threshold_and_main_table_equal_dp_simulate(made):
    cache, out, _ = made
    data = _report(out)["figures"]
    sim = _simulate(cache, "--run", "conf", "--policy", "deepprune", "--sweep", "tau=0.05:0.95:0.05")
    fig = [r for r in data["threshold"]["rows"] if r["run"] == "conf"]
    assert len(fig) == len(sim) == 19
    for a, b in zip(fig, sim, strict=True):
        assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}
    policies = ["cons", "deepconf-low", "deepconf-high", "deepprune", "esc", "adaptive", "random",
                "deepprune-oracle"]
    for run in ("conf", "plain"):
        names = [p for p in policies if run == "conf" or not p.startswith("deepconf")]
        sim = _simulate(cache, "--run", run, "--tau", "0.5", *sum((["--policy", p] for p in names), []))
        fig = {r["policy"]: r for r in data["main_table"]["rows"] if r["run"] == run}
        matched = ["deepprune matched-random", "deepprune-oracle matched-random"]
        assert sorted(fig) == sorted(names + matched)
        for row in sim:
            assert {k: fig[row["policy"]][k] for k in KEYS} == {k: row[k] for k in KEYS}, row["policy"]
            if row["policy"].startswith("deepprune"):  # the paired control, as dp simulate prints it
                ctl = fig[row["policy"] + " matched-random"]
                assert (ctl["accuracy"], ctl["tokens"]) == (row["matched_accuracy"], row["matched_tokens"])
                assert fig[row["policy"]]["diff_vs_matched"] == row["matched_accuracy_diff"]
        assert fig["deepprune"]["token_reduction"] > 0 and fig["cons"]["token_reduction"] == 0


def test_second_call_reads_the_stored_points(made, tmp_path):
    cache, _, _ = made
    count = "SELECT count(*) FROM sim_points"
    with duckdb.connect(str(cache), read_only=True) as con:
        before = con.execute(count).fetchall()[0][0]
    r = invoke("figures", "--cache", cache, "--out", tmp_path, "--judge", "jaccard", "--orders", ORDERS,
               "--seed", 7, "--truncate", TRUNCATE, "--run", "plain", "--json")
    assert r.exit_code == 0, r.output
    points = json.loads(r.stdout)["points"]
    assert points["computed"] == 0 and points["reused"] > 0
    with duckdb.connect(str(cache), read_only=True) as con:
        assert con.execute(count).fetchall()[0][0] == before
    pareto = _report(tmp_path)["figures"]["pareto"]
    assert {r["run"] for r in pareto["rows"]} == {"plain"} and any(r["on_frontier"] for r in pareto["rows"])


def test_live_run_is_drawn_against_its_simulation(tmp_path):
    from dp.figures.live import live_figure

    path = tmp_path / "live.duckdb"
    with Cache(path, write=True) as c:
        c.create_run(RunInfo(run="live1", model="m", engine="test", tokenizer="w", source="live",
                             dataset="test", n=2, settings={
                                 "compare_with": "conf",
                                 "simulated_per_problem": [{"problem_id": "p0", "tokens": 100.0},
                                                           {"problem_id": "p1", "tokens": 50.0}]}))
        c.con.executemany("INSERT INTO live_traces VALUES ('live1', ?, ?, ?, 'keep', 10, ?)",
                          [("p0", 0, 0, 60), ("p0", 1, 1, 50), ("p1", 0, 0, 40)])
        fig = live_figure(c, None, tmp_path)
    assert fig.skipped is None and (tmp_path / "live.png").exists() and (tmp_path / "live.pdf").exists()
    assert [(r["problem_id"], r["simulated_tokens"], r["live_tokens"]) for r in fig.rows] == \
        [("p0", 100.0, 110.0), ("p1", 50.0, 40.0)]
    assert fig.data["totals"]["live1"]["ratio"] == pytest.approx(150 / 150)


def test_default_judge_falls_back_to_jaccard_with_a_note(monkeypatch):
    import dp.figures.settings as fs
    from dp.errors import DPError

    real = fs.load_judge

    def fake(name, seed=0):
        if name == "features":
            raise DPError("the default features judge is not installed")
        return real(name, seed=seed)

    monkeypatch.setattr(fs, "load_judge", fake)
    j = fs.resolve_judges(fs.FigureSettings())
    assert j.main == "jaccard" and j.ablation == "jaccard" and "features" in j.notes[0]
    assert fs.resolve_judges(fs.FigureSettings(judges=("oracle", "embedding"))).roc[-1] == "embedding"


def test_bad_input_is_a_one_line_error(made, tmp_path):
    cache, _, _ = made
    for args, msg in ((["--run", "absent"], "no run"), (["--taus", "x"], "bad sweep"),
                      (["--judge", "nope"], "nope"), (["--word-ks", "a"], "word-ks")):
        r = invoke("figures", "--cache", cache, "--out", tmp_path, *args)
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1


def test_library_call_on_a_read_only_cache_stores_nothing(made, tmp_path):
    from dp.figures import FigureSettings, make_figures

    cache_path, _, _ = made
    settings = FigureSettings(judges=("jaccard",), truncate=TRUNCATE, orders=2, seed=3, taus=(0.3, 0.6),
                              token_ks=(10,), word_ks=(2,), max_pairs=50)
    with Cache(cache_path) as cache:
        before = cache.con.execute("SELECT count(*) FROM sim_points").fetchall()[0][0]
        report = make_figures(cache, ["conf"], tmp_path, settings)
        assert cache.con.execute("SELECT count(*) FROM sim_points").fetchall()[0][0] == before
    assert report.points["stored"] is False and report.points["computed"] > 0
    assert [r["tau"] for r in report.figure("threshold").rows] == [0.3, 0.6]
    assert all(r["pairs"] <= 50 for r in report.figure("roc").rows)
    assert "not stored" in report.markdown_path.read_text()
