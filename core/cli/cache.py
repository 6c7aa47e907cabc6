"""`dp import`, `dp export`, `dp cache info`, `dp cache merge`: traces into and out of the cache."""

from __future__ import annotations

import click

from dp.cli.options import cache_option, emit_json, json_option, print_table, run_name

DEFAULT_TOKENIZER = "smollm2-135m"


@click.command("import")
@click.argument("file", type=click.Path())
@click.option("--run", "run", required=True, callback=run_name,
              help="Name of the new run (with several models: RUN-<model>).")
@cache_option
@click.option("--format", "fmt", default="generic", show_default=True,
              type=click.Choice(["generic", "esc", "qwen-math", "matharena", "table"]),
              help="Layout of FILE. matharena: MathArena output tables; table: any Parquet/JSONL/CSV "
                   "file, Parquet folder or datasets folder, with --map.")
@click.option("--map", "column_map", default=None,
              help="--format table: problem_id=COL,question=COL,text=COL,gold=COL[,answer=COL,model=COL,"
                   "index=COL,...] (default: the columns of `dp export`).")
@click.option("--model", default=None, help="Import only this model's traces (matharena, table with model=).")
@click.option("--tokenizer", default=DEFAULT_TOKENIZER, show_default=True,
              help="Tokenizer (alias or local directory) that turns texts into tokens.")
@click.option("--replace", is_flag=True, help="Overwrite a run of the same name.")
@json_option
def import_cmd(file, run, cache_path, fmt, column_map, model, tokenizer, replace, as_json):
    """Import traces sampled elsewhere (text only: log-probs stay missing)."""
    if fmt in ("matharena", "table"):
        from dp.cache.import_pipeline import import_table_file

        rows = import_table_file(file, run, cache_path, fmt, tokenizer, column_map=column_map,
                                 model=model, replace=replace)
        if as_json:
            emit_json(rows[0] if len(rows) == 1 else {"runs": rows})
            return
        for r in rows:
            check = r["token_check"]
            agree = r["grading_agreement"]
            click.echo(f"imported {r['traces']} traces of {r['problems']} problems ({r['tokens']} tokens, "
                       f"tokenizer {tokenizer}) into run '{r['run']}' of {cache_path}"
                       + (f"; dp/file tokens {check['ratio']:.3f}" if check and check["ratio"] else "")
                       + (f"; grading agrees with the file on {agree['agree']}/{agree['compared']}"
                          if agree else ""))
        click.echo(f"{rows[0]['seconds']:.1f} s, {rows[0]['tokens_per_s']:,.0f} tokens/s")
        return
    if column_map is not None or model is not None:
        from dp.errors import DPError

        raise DPError("--map and --model apply to --format table and matharena only")
    from dp.cache.store import Cache, RunInfo
    from dp.generate.importers.formats import read_file, tokenize
    from dp.models import load_tokenizer

    meta, items = read_file(file, fmt)  # all parsing and validation before the cache is touched
    tok = load_tokenizer(tokenizer)
    records = [r for item in items for r in tokenize(tok, item)]
    with Cache(cache_path, write=True) as cache:
        if cache.has_run(run) and not replace:
            from dp.errors import DPError

            raise DPError(f"run '{run}' already exists in {cache_path}; use --replace to overwrite it")
        with cache.transaction():
            cache.create_run(RunInfo(
                run=run, model=meta.model, engine="import", tokenizer=tokenizer,
                source=f"import:{fmt}", dataset=meta.dataset,
                n=max(len(i.texts) for i in items), settings={"file": str(file)},
            ), replace=replace)
            cache.add_problems(run, [i.problem for i in items])
            cache.write_traces(run, records)
        from dp.cache.info import run_stats

        stats = run_stats(cache, run)
    if as_json:
        emit_json(stats)
    else:
        click.echo(f"imported {stats['traces']} traces of {stats['problems']} problems "
                   f"({stats['tokens']} tokens) into run '{run}' of {cache_path}")


@click.command("export")
@click.argument("out", type=click.Path())
@click.option("--run", "run", required=True, help="The run to export.")
@cache_option
@click.option("--format", "fmt", default=None, type=click.Choice(["parquet", "jsonl"]),
              help="Output format (default: from OUT's suffix, else parquet).")
@json_option
def export_cmd(out, run, cache_path, fmt, as_json):
    """Write a run as one flat table (one row per trace) that pandas and `datasets` load."""
    from dp.cache.export import export_run, format_for
    from dp.cache.store import Cache

    with Cache(cache_path) as cache:
        res = export_run(cache, run, out, format_for(out, fmt))
    if as_json:
        emit_json(res)
    else:
        click.echo(f"exported {res['rows']} traces of run '{run}' to {res['out']} ({res['format']}, "
                   f"{res['bytes']:,} bytes)")


@click.group("cache")
def cache_group():
    """Inspect and combine trace caches."""


@cache_group.command("info")
@cache_option
@click.option("--run", "runs", multiple=True, callback=run_name, help="Only these runs (default: all).")
@json_option
def info_cmd(cache_path, runs, as_json):
    """Per run: problems, traces, tokens, accuracy, majority accuracy, same-answer pair rate."""
    from dp.cache.info import run_stats, token_bytes_by_run
    from dp.cache.store import Cache
    from dp.provenance import stamp

    with Cache(cache_path) as cache:
        names = list(runs) or cache.runs()
        token_bytes = token_bytes_by_run(cache)
        rows = [run_stats(cache, r, token_bytes) for r in names]
    if as_json:
        emit_json({"cache": cache_path, "runs": rows, **stamp()})
        return
    if not rows:
        click.echo(f"{cache_path}: no runs")
        return
    print_table(rows, ["run", "tokenizer", "problems", "traces", "tokens", "bytes_per_token", "trace_accuracy",
                       "majority_accuracy", "same_answer_pair_rate", "has_logprobs"])
    if rows[0]["file_bytes_per_token"] is not None:
        click.echo(f"file: {rows[0]['file_bytes_per_token']:.2f} bytes per token over all runs "
                   "(bytes_per_token: each run's share of the tokens table)")


@cache_group.command("merge")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Cache to merge into.")
@json_option
def merge_cmd(inputs, out, as_json):
    """Merge cache files (e.g. shards of one run) into --out."""
    from dp.cache.merge import merge

    added = merge(out, list(inputs))
    if as_json:
        emit_json(added)
    else:
        click.echo(f"merged {len(inputs)} file(s) into {out}: {added['runs']} new runs, {added['traces']} traces")


COMMANDS = [import_cmd, export_cmd, cache_group]
