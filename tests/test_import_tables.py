"""`dp import --format matharena|table` and `dp export`, on files written here in each documented
schema (MathArena's two column sets, a nested-list Parquet folder, a `datasets` folder, a CSV)
and on the two shipped trace files exported and read back."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dp.generate.importers.matharena import trace_text
from dp.models import load_tokenizer
from tests.conftest import invoke

MSG = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string()), ("type", pa.string())]))


def _info(cache, run=None):
    args = ["cache", "info", "--cache", cache, "--json"] + (["--run", run] if run else [])
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)["runs"]


def _ok(*args):
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _fail(*args):
    r = invoke(*args)
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def _matharena_rows():
    """2 models x 3 problems x 4 answers; model B's reasoning points elsewhere than its answer."""
    rows = []
    golds = {"1": "42", "2": "\\frac{1}{2}", "3": "17"}
    for model in ("org/model-A (high)", "model-B"):
        for pid, gold in golds.items():
            for k in range(4):
                final = gold if k < 3 else "5"
                reasoning = f"Let me think about problem {pid}. Try {k} first, then check."
                answer = f"So the result is \\boxed{{{final}}}."
                rows.append({
                    "problem_idx": pid, "problem": f"Problem {pid}: compute it.", "model_name": model,
                    "model_config": f"{model}.yaml", "idx_answer": k,
                    "all_messages": [{"role": "user", "content": "q", "type": None},
                                     {"role": "assistant", "content": reasoning, "type": "cot"},
                                     {"role": "assistant", "content": answer, "type": "response"}],
                    "user_message": "q", "answer": answer, "input_tokens": 30,
                    "output_tokens": 20 + k, "cost": 0.001, "source": "x", "history": [],
                    "gold_answer": gold,
                    # their parser failed on one trace per problem of model B
                    "parsed_answer": None if (model == "model-B" and k == 0) else final,
                    "correct": False if (model == "model-B" and k == 0) else final == gold,
                })
    return rows


def _write_matharena_new(path):
    schema = pa.schema([("problem_idx", pa.string()), ("problem", pa.string()), ("model_name", pa.string()),
                        ("model_config", pa.string()), ("idx_answer", pa.int64()), ("all_messages", MSG),
                        ("user_message", pa.string()), ("answer", pa.string()), ("input_tokens", pa.int64()),
                        ("output_tokens", pa.int64()), ("cost", pa.float64()), ("source", pa.string()),
                        ("history", pa.list_(pa.null())), ("gold_answer", pa.string()),
                        ("parsed_answer", pa.string()), ("correct", pa.bool_())])
    pq.write_table(pa.Table.from_pylist(_matharena_rows(), schema=schema), path)


def test_matharena_new_schema_one_run_per_model_with_agreement(tmp_path):
    f = tmp_path / "aime_outputs.parquet"
    _write_matharena_new(f)
    cache = tmp_path / "c.duckdb"
    out = _ok("import", f, "--format", "matharena", "--run", "ma", "--cache", cache)
    runs = {r["run"]: r for r in out["runs"]}
    assert set(runs) == {"ma-org-model-a-high", "ma-model-b"}
    for r in runs.values():
        assert r["problems"] == 3 and r["traces"] == 12 and r["tokenizer"] == "smollm2-135m"
        assert r["trace_accuracy"] == pytest.approx(9 / 12)  # answer k = 3 is wrong everywhere
        assert r["token_check"]["traces_compared"] == 12
        assert r["token_check"]["file_tokens"] == 3 * (20 + 21 + 22 + 23)
        assert r["token_check"]["dp_tokens"] == r["tokens"]
    # dp grades model B's k = 0 answers correct where their parser recorded a failure
    assert runs["ma-model-b"]["grading_agreement"] == {"compared": 12, "agree": 9, "rate": 0.75}
    assert runs["ma-org-model-a-high"]["grading_agreement"]["rate"] == 1.0
    con = duckdb.connect(str(cache), read_only=True)
    text, model, settings = con.execute(
        "SELECT t.text, r.model, r.settings FROM traces t JOIN runs r USING (run) "
        "WHERE run = 'ma-model-b' AND problem_id = '002' AND idx = 1").fetchall()[0]
    con.close()
    assert text == ("Let me think about problem 2. Try 1 first, then check.\n\n"
                    "So the result is \\boxed{\\frac{1}{2}}.")
    assert model == "model-B"
    rec = json.loads(settings)["recorded"]
    assert ["001", 0, None] in rec["parsed_answer"] and ["001", 0, False] in rec["correct"]
    assert _info(cache, "ma-model-b")[0]["tokenizer"] == "smollm2-135m"


def test_matharena_old_schema_and_model_pick(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("all_messages", "history", "parsed_answer", "correct")}
            | {"problem_idx": int(r["problem_idx"])} for r in _matharena_rows()]
    f = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pylist(rows), f)
    cache = tmp_path / "c.duckdb"
    out = _ok("import", f, "--format", "matharena", "--run", "old", "--model", "model-B", "--cache", cache)
    assert out["run"] == "old" and out["traces"] == 12 and out["grading_agreement"] is None
    con = duckdb.connect(str(cache), read_only=True)
    texts = [t for (t,) in con.execute("SELECT text FROM traces ORDER BY problem_id, idx").fetchall()]
    con.close()
    assert texts[0] == "So the result is \\boxed{42}."  # no reasoning column: the answer alone
    line = _fail("import", f, "--format", "matharena", "--run", "x", "--model", "nobody", "--cache", cache)
    assert "no model 'nobody'" in line and "model-B" in line


def test_trace_text_reads_messages_as_list_or_json():
    msgs = [{"role": "assistant", "type": "cot", "content": "think"},
            {"role": "assistant", "type": "response", "content": "A"}]
    assert trace_text(msgs, "A") == trace_text(json.dumps(msgs), "A") == "think\n\nA"
    assert trace_text(None, "A") == "A" and trace_text(msgs, None) == "think"


def _openr1_rows():
    return [{"uuid": f"u{p}", "problem": f"What is {p} + {p}?", "answer": str(2 * p),
             "generations": [f"{p}+{p} = \\boxed{{{2 * p}}}", f"guess \\boxed{{{2 * p + 1}}}",
                             f"so \\boxed{{{2 * p}}}"][: 2 + p % 2]}
            for p in range(1, 7)]


def test_nested_lists_in_a_parquet_folder_are_exploded(tmp_path):
    rows = _openr1_rows()
    folder = tmp_path / "openr1" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:3]), folder / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[3:]), folder / "train-00001-of-00002.parquet")
    cache = tmp_path / "c.duckdb"
    out = _ok("import", tmp_path / "openr1", "--format", "table", "--run", "o", "--cache", cache,
              "--map", "problem_id=uuid,question=problem,text=generations,gold=answer")
    n = sum(len(r["generations"]) for r in rows)
    assert out["problems"] == 6 and out["traces"] == n == 15
    correct = sum(g.endswith(f"{{{2 * int(r['uuid'][1:])}}}") for r in rows for g in r["generations"])
    assert out["trace_accuracy"] == pytest.approx(correct / n)
    con = duckdb.connect(str(cache), read_only=True)
    idx = con.execute("SELECT problem_id, list(idx ORDER BY idx) FROM traces GROUP BY 1 ORDER BY 1").fetchall()
    con.close()
    assert idx[0] == ("u1", [0, 1, 2]) and idx[1] == ("u2", [0, 1])


def test_datasets_folder_and_csv(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": f"p{i // 3}", "q": f"question {i // 3}", "sol": "7", "out": f"thus \\boxed{{{7 + i % 2}}}",
             "who": "lab-model"} for i in range(9)]
    ds_dir = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(ds_dir))
    import pyarrow.csv  # noqa: F401 - pa.csv below
    cache = tmp_path / "c.duckdb"
    spec = "problem_id=id,question=q,text=out,gold=sol,model=who"
    a = _ok("import", ds_dir, "--format", "table", "--run", "d", "--cache", cache, "--map", spec)
    assert a["traces"] == 9 and a["problems"] == 3 and a["model"] == "lab-model"
    assert a["trace_accuracy"] == pytest.approx(5 / 9)
    csv = tmp_path / "t.csv"
    pa.csv.write_csv(pa.Table.from_pylist([r | {"id": f"00{r['id'][1:]}"} for r in rows]), csv)
    b = _ok("import", csv, "--format", "table", "--run", "c", "--cache", cache, "--map", spec)
    assert {k: b[k] for k in ("traces", "problems", "tokens", "trace_accuracy")} == \
        {k: a[k] for k in ("traces", "problems", "tokens", "trace_accuracy")}
    con = duckdb.connect(str(cache), read_only=True)
    pids = [p for (p,) in con.execute("SELECT DISTINCT problem_id FROM problems WHERE run = 'c' ORDER BY 1").fetchall()]
    con.close()
    assert pids == ["000", "001", "002"]  # CSV ids stay text, leading zeros kept


def test_tokens_and_offsets_match_the_tokenizer_across_batch_sizes(tmp_path):
    from dp.cache.import_pipeline import import_table_file
    from dp.cache.store import Cache

    rows = [{"pid": f"p{i % 4}", "q": "q", "g": "1", "t": f"Step {i}: café ∑ {'word ' * (i * 7)}\\boxed{{1}}  "}
            for i in range(40)]  # a problem's traces are spread over many batches
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = "problem_id=pid,question=q,text=t,gold=g"
    small, large = tmp_path / "s.duckdb", tmp_path / "l.duckdb"
    import_table_file(f, "r", small, "table", "smollm2-135m", column_map=spec, batch_rows=3)
    import_table_file(f, "r", large, "table", "smollm2-135m", column_map=spec, batch_rows=1000)
    tok = load_tokenizer("smollm2-135m")
    got = {}
    for path in (small, large):
        with Cache(path) as c:
            pts = c.load_run("r")
            ids = [int(t) for p in pts for t in p.trace_ids]
            got[path] = (c.texts(ids), [a.tolist() for a in c.token_arrays(ids)],
                         [a.tolist() for a in c.token_arrays(ids, "end_offset")],
                         [p.index.tolist() for p in pts])
    assert got[small] == got[large]
    texts, toks, ends, index = got[small]
    assert index == [list(range(10))] * 4
    for text, t, e in zip(texts, toks, ends):
        assert t == tok(text, add_special_tokens=False)["input_ids"]
        assert e[-1] == len(text) and all(a <= b for a, b in zip(e, e[1:]))
        assert tok.decode(t[:5]) == text[: e[4]]


def test_round_trip_of_the_shipped_files_gives_identical_statistics(real_cache, tmp_path):
    cache = tmp_path / "rt.duckdb"
    for run, name in (("esc", "esc.parquet"), ("qwen", "qwen.jsonl")):
        out = _ok("export", tmp_path / name, "--run", run, "--cache", real_cache)
        assert out["rows"] == {"esc": 20000, "qwen": 800}[run]
        _ok("import", tmp_path / name, "--format", "table", "--run", run, "--cache", cache)
    before = {r["run"]: r for r in _info(real_cache)}
    after = {r["run"]: r for r in _info(cache)}
    for run in ("esc", "qwen"):
        skip = {"source", "bytes_per_token", "file_bytes_per_token"}  # another file; another source
        assert {k: v for k, v in after[run].items() if k not in skip} == \
            {k: v for k, v in before[run].items() if k not in skip}
        assert after[run]["source"] == "import:table"
    same = "SELECT problem_id, idx, text, answer, answer_class, correct, n_tokens, finish_reason FROM traces " \
           "WHERE run = ? ORDER BY ALL"
    a, b = duckdb.connect(str(real_cache), read_only=True), duckdb.connect(str(cache), read_only=True)
    for run in ("esc", "qwen"):
        assert a.execute(same, [run]).fetchall() == b.execute(same, [run]).fetchall()
        q = "SELECT problem_id, dataset, question, gold, kind FROM problems WHERE run = ? ORDER BY ALL"
        assert a.execute(q, [run]).fetchall() == b.execute(q, [run]).fetchall()
    a.close()
    b.close()


def test_export_loads_with_pandas_and_datasets(real_cache, tmp_path):
    datasets = pytest.importorskip("datasets")
    _ok("export", tmp_path / "q.parquet", "--run", "qwen", "--cache", real_cache)
    _ok("export", tmp_path / "q.jsonl", "--run", "qwen", "--cache", real_cache)
    df = pq.read_table(tmp_path / "q.parquet").to_pandas()
    assert len(df) == 800 and list(df.columns[:3]) == ["run", "model", "problem_id"]
    assert df["n_tokens"].sum() == _info(real_cache, "qwen")[0]["tokens"]
    ds = datasets.Dataset.from_parquet(str(tmp_path / "q.parquet"), cache_dir=str(tmp_path / "hf"))
    js = datasets.Dataset.from_json(str(tmp_path / "q.jsonl"), cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == js.num_rows == 800
    assert ds[5]["text"] == js[5]["text"] == df["text"][5]
    assert json.loads(ds[0]["sampling"]) == {}


def test_bad_tables_are_one_line_errors_and_write_nothing(real_cache, tmp_path):
    good = tmp_path / "g.parquet"
    pq.write_table(pa.table({"pid": ["a"], "q": ["q"], "t": ["\\boxed{1}"], "g": ["1"], "n": [3]}), good)
    cache = tmp_path / "new.duckdb"
    spec = "problem_id=pid,question=q,text=t,gold=g"
    line = _fail("import", good, "--format", "table", "--run", "x", "--cache", cache,
                 "--map", "problem_id=pid,question=q,text=body,gold=g")
    assert "'body'" in line and str(good) in line
    line = _fail("import", good, "--format", "table", "--run", "x", "--cache", cache,
                 "--map", "problem_id=pid,question=n,text=t,gold=g")
    assert "'n'" in line and "expected string" in line
    empty = tmp_path / "e.parquet"
    pq.write_table(pa.table({"pid": pa.array([], pa.string()), "q": pa.array([], pa.string()),
                             "t": pa.array([], pa.string()), "g": pa.array([], pa.string())}), empty)
    line = _fail("import", empty, "--format", "table", "--run", "x", "--cache", cache, "--map", spec)
    assert "empty table" in line and str(empty) in line
    assert not cache.exists()  # nothing was written, not even an empty cache file
    line = _fail("import", good, "--format", "matharena", "--run", "x", "--cache", cache)
    assert "no column 'problem_idx'" in line
    # a type error deep in a JSONL file, found after batches were committed: --replace of an
    # existing run keeps the old run, the other runs are untouched, no staged rows remain
    bad = tmp_path / "b.jsonl"
    bad.write_text("".join(json.dumps({"pid": f"p{i}", "q": "q", "t": "ab " * 700, "g": "1"}) + "\n"
                           for i in range(800))  # 1.7 MB: the reader's second block holds the bad row
                   + json.dumps({"pid": "z", "q": "q", "t": ["not", "text"], "g": "1"}) + "\n")
    before = _info(real_cache)
    line = _fail("import", bad, "--format", "table", "--run", "qwen", "--replace", "--cache", real_cache,
                 "--map", spec)
    assert str(bad) in line and "cannot read" in line  # found while reading, after batches were written
    after = _info(real_cache)
    drop = {"bytes_per_token", "file_bytes_per_token"}  # the file may keep the space of the deleted rows
    assert [{k: v for k, v in r.items() if k not in drop} for r in after] == \
        [{k: v for k, v in r.items() if k not in drop} for r in before]
    con = duckdb.connect(str(real_cache), read_only=True)
    assert con.execute("SELECT count(*) FROM traces WHERE run NOT IN ('esc', 'qwen')").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM problems WHERE run NOT IN ('esc', 'qwen')").fetchall()[0][0] == 0
    con.close()
    line = _fail("import", good, "--format", "table", "--run", "x", "--cache", cache, "--map", "problem_id=pid,oops")
    assert "KEY=COLUMN" in line
    line = _fail("export", tmp_path / "o.parquet", "--run", "nope", "--cache", real_cache)
    assert "no run 'nope'" in line and not (tmp_path / "o.parquet").exists()


def test_rows_without_a_model_name_are_kept_in_their_own_run(tmp_path):
    f = tmp_path / "m.jsonl"
    models = ["m1", "m1", None, "m2"]
    f.write_text("".join(json.dumps({"pid": "a", "q": "q", "t": f"\\boxed{{{i}}}", "g": "1", "m": m}) + "\n"
                         for i, m in enumerate(models)))
    out = _ok("import", f, "--format", "table", "--run", "x", "--cache", tmp_path / "c.duckdb",
              "--map", "problem_id=pid,question=q,text=t,gold=g,model=m")
    assert {r["run"]: r["traces"] for r in out["runs"]} == {"x-m1": 2, "x-unknown": 1, "x-m2": 1}
    assert {r["run"]: r["trace_accuracy"] for r in out["runs"]}["x-m1"] == 0.5


def test_leftovers_of_a_killed_import_are_cleared_by_the_next(tmp_path):
    import numpy as np

    from dp.cache.ingest import STAGING
    from dp.cache.store import Cache
    from dp.types import Problem, TraceRecord

    cache = tmp_path / "c.duckdb"
    with Cache(cache, write=True) as c:  # what a kill -9 between two batch commits leaves
        c.add_problems(STAGING + "r", [Problem("d", "a", "q", "1")])
        c.write_traces(STAGING + "r", [TraceRecord("a", 0, "x", np.array([1], np.int32), np.array([1], np.int32))])
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"pid": "b", "q": "q", "t": "\\boxed{1}", "g": "1"}) + "\n")
    out = _ok("import", f, "--format", "table", "--run", "r", "--cache", cache,
              "--map", "problem_id=pid,question=q,text=t,gold=g")
    assert out["traces"] == 1 and out["trace_accuracy"] == 1.0
    con = duckdb.connect(str(cache), read_only=True)
    assert con.execute("SELECT DISTINCT run FROM traces").fetchall() == [("r",)]
    assert con.execute("SELECT count(*) FROM tokens").fetchall()[0][0] == out["tokens"]
    con.close()


def test_export_round_trip_keeps_seeds_finish_reasons_and_sampling(tmp_path):
    from dp.cache.store import Cache, RunInfo
    from dp.generate.importers.stream import ImportStream
    from dp.types import FinishReason, Problem, TraceRecord

    src, dst = tmp_path / "src.duckdb", tmp_path / "dst.duckdb"
    sampling = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 11}
    stream = ImportStream(load_tokenizer("smollm2-135m"), {None: "g"}, "arith", "m")
    texts = ["so \\boxed{4}", "hmm \\boxed{5}", "cut off"]
    ids, ends = stream.encode(texts)
    recs = [TraceRecord("p1", i, t, ids[i], ends[i], seed=1000 + i,
                        finish_reason=[FinishReason.STOP, FinishReason.STOP, FinishReason.LENGTH][i])
            for i, t in enumerate(texts)]
    with Cache(src, write=True) as c:
        c.create_run(RunInfo("g", "SmolLM2", "vllm 0.32", "smollm2-135m", "generate", "arith", 3, seed=11,
                             sampling=sampling))
        c.add_problems("g", [Problem("arith", "p1", "2+2?", "4")])
        c.write_traces("g", recs)
    _ok("export", tmp_path / "g.jsonl", "--run", "g", "--cache", src)
    out = _ok("import", tmp_path / "g.jsonl", "--format", "table", "--run", "g", "--cache", dst)
    assert out["model"] == "SmolLM2" and out["trace_accuracy"] == pytest.approx(1 / 3)
    q = "SELECT idx, seed, finish_reason, text, answer, n_tokens FROM traces ORDER BY idx"
    a, b = duckdb.connect(str(src), read_only=True), duckdb.connect(str(dst), read_only=True)
    assert a.execute(q).fetchall() == b.execute(q).fetchall()
    assert [r[1] for r in b.execute(q).fetchall()] == [1000, 1001, 1002]
    assert json.loads(b.execute("SELECT sampling FROM runs").fetchall()[0][0]) == sampling
    a.close()
    b.close()
