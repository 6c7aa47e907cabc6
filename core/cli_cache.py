"""`dp import`, `dp cache info`, `dp cache merge`: getting traces into the cache and looking at it."""

from __future__ import annotations

import click

from dp.cli_options import cache_option, emit_json, json_option, print_table, run_name

DEFAULT_TOKENIZER = "smollm2-135m"


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--run", "run", required=True, callback=run_name, help="Name of the new run.")
@cache_option
@click.option("--format", "fmt", default="generic", show_default=True,
              type=click.Choice(["generic", "esc", "qwen-math"]), help="Layout of FILE.")
@click.option("--tokenizer", default=DEFAULT_TOKENIZER, show_default=True,
              help="Tokenizer (alias or local directory) that turns texts into tokens.")
@click.option("--replace", is_flag=True, help="Overwrite a run of the same name.")
@json_option
def import_cmd(file, run, cache_path, fmt, tokenizer, replace, as_json):
    """Import text-only traces sampled elsewhere (log-probs stay missing)."""
    from dp.cache.store import Cache, RunInfo
    from dp.generate.importers import read_file, tokenize
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
    print_table(rows, ["run", "problems", "traces", "tokens", "bytes_per_token", "trace_accuracy",
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


COMMANDS = [import_cmd, cache_group]
