"""`dp judge pairs|train|eval`: the CLI skin over `dp.judge.train`.

Each command parses flags, calls one library function and prints a table or `--json`.
Heavy imports (scikit-learn, torch) happen inside the library, on use.
"""

from __future__ import annotations

import json

import click

from dp.cli.options import (
    cache_option,
    emit_json,
    json_option,
    print_table,
    run_option,
    seed_option,
    truncate_option,
)

max_pairs_option = click.option(
    "--max-pairs", type=click.IntRange(min=1), default=None,
    help="At most this many pairs per problem, sampled with --seed (default: all pairs).",
)


crossfit_option = click.option(
    "--crossfit", type=click.IntRange(min=2), default=None, metavar="K",
    help="Train K judges of the --judge type on folds of the run's problems; score each problem with "
         "the judge that never saw it.",
)


def oversample_option(default: int):
    return click.option(
        "--oversample", type=click.IntRange(min=1), default=default, show_default=True,
        help="Repeat each different-answer (label 0) pair this many times.",
    )


def _rows(summary: dict, keys: list[str]) -> None:
    print_table([{"key": k, "value": summary.get(k)} for k in keys if k in summary], ["key", "value"])


def _settings(pairs: tuple[str, ...]) -> dict:
    """{key: value} from KEY=VALUE strings; a value is JSON (3, 0.5, true, null) or else a string."""
    out: dict = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@click.group("judge")
def judge_group() -> None:
    """Build judge pairs, train a judge, evaluate one (AUROC, TNR at FNR 0.2)."""


@judge_group.command("pairs")
@cache_option
@run_option(required=True)
@truncate_option
@max_pairs_option
@seed_option
@oversample_option(default=1)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the pairs as JSONL here.")
@json_option
def pairs_cmd(cache_path, run, truncate, max_pairs, seed, oversample, out, as_json):
    """Count (and optionally export) the labelled same-problem pairs of a run."""
    from dp.judge.train import pairs_summary

    summary = pairs_summary(cache_path, run, truncate, max_pairs, seed, oversample, out)
    if as_json:
        emit_json(summary)
    else:
        _rows(summary, ["run", "truncate", "problems", "pairs", "positive_rate", "out"])


@judge_group.command("train")
@cache_option
@click.option("--run", "runs", multiple=True, required=True, help="Run to train on (repeat for several).")
@click.option("--judge", "judge_type", default="features", show_default=True,
              help="Judge type to train (see dp.judge.train.TRAINERS).")
@click.option("--truncate", "truncate", multiple=True, default=("words:25",), show_default=True,
              help="Prefix rule tokens:K or words:K; repeat to pool pairs under several rules; "
                   "RUN=RULE applies to that run only.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for judge.json.")
@seed_option
@oversample_option(default=2)
@max_pairs_option
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimiser steps (neural judges; same as --set steps=N).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A trainer setting, e.g. --set focal_gamma=2 --set model=DIR (repeatable; "
                   "values parse as JSON where they can).")
@click.option("--resume", is_flag=True,
              help="Continue the training checkpointed in OUT/checkpoint (llm; starts fresh when there is none).")
@click.option("--time-limit", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Stop at the first checkpoint past this many seconds of training; --resume goes on (llm).")
@json_option
def train_cmd(cache_path, runs, judge_type, truncate, out, seed, oversample, max_pairs, steps, sets, resume,
              time_limit, as_json):
    """Train a judge on the pairs of one or more runs; writes OUT/judge.json.

    With --time-limit the llm judge trains in chunks: a chunk that stops early prints
    complete = false and leaves OUT/checkpoint; the same command with --resume continues.
    """
    from dp.judge.train import train_judge

    settings = _settings(sets)
    if steps is not None:
        settings["steps"] = steps
    summary = train_judge(cache_path, runs, judge_type, truncate, out, seed, oversample, max_pairs, settings,
                          resume=resume, time_limit=time_limit)
    if as_json:
        emit_json(summary)
    else:
        _rows(summary, ["judge", "out", "runs", "truncate", "pairs", "positive_rate", "complete", "step",
                        "best_val_auroc", "train_auroc", "train_tnr_at_fnr_0_2"])


@judge_group.command("eval")
@cache_option
@run_option(required=True)
@click.option("--judge", "judge", required=True,
              help="Judge name (oracle, random, jaccard, embedding, features, ...) or a trained-judge directory.")
@truncate_option
@max_pairs_option
@seed_option
@crossfit_option
@oversample_option(default=2)
@json_option
def eval_cmd(cache_path, run, judge, truncate, max_pairs, seed, crossfit, oversample, as_json):
    """AUROC and TNR at FNR=0.2 of a judge on a run's pairs; scores are stored in the cache.

    With --crossfit K, JUDGE is a trainable type: K judges are trained on folds of the run's
    problems and each pair is scored by the one that never saw its problem (--oversample
    applies to that training).
    """
    from dp.judge.insample import message
    from dp.judge.train import evaluate_judge

    result = evaluate_judge(cache_path, run, judge, truncate, max_pairs, seed, crossfit=crossfit,
                            oversample=oversample)
    if result["judge_in_sample"]:
        click.echo(f"warning: {message(result['judge'], run)}", err=True)
    if as_json:
        emit_json(result)
    else:
        _rows(result, ["judge", "run", "truncate", "pairs", "positive_rate", "auroc", "tnr_at_fnr_0_2",
                       "judge_in_sample", "crossfit", "scores_cached", "scores_computed"])


@judge_group.command("loro")
@cache_option
@click.option("--group", "groups", multiple=True, required=True, metavar="NAME[=RUN,...]",
              help="A held-out group: a run, or NAME=RUN,RUN for runs of one model and task (repeat; "
                   "the first run of a group is evaluated).")
@click.option("--truncate", "truncate", multiple=True, required=True,
              help="Prefix rule (repeatable); RUN=RULE applies to that run only.")
@click.option("--judge", "judges", multiple=True, required=True, metavar="[LABEL=]SPEC",
              help="Judge name or directory (repeatable); {heldout} in SPEC is the held-out group's name.")
@click.option("--max-pairs", type=click.IntRange(min=2), default=300, show_default=True,
              help="Pairs per run and rule (a seeded sample spread over the problems).")
@click.option("--skip-missing", is_flag=True,
              help="Leave out a {heldout} judge not trained for a group instead of failing.")
@seed_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for judge_loro.json and the ROC figures (`dp figures --out` there picks them up).")
@json_option
def loro_cmd(cache_path, groups, truncate, judges, max_pairs, skip_missing, seed, out, as_json):
    """Leave-one-run-out: every judge on runs whose model and task its training never saw."""
    from dp.figures.loro import write_loro
    from dp.judge.loro import run_loro

    result = run_loro(cache_path, list(groups), list(truncate), list(judges), max_pairs, seed, skip_missing)
    for m in result["missing"]:
        click.echo(f"warning: not trained for every group, left out there: {m}", err=True)
    figures = write_loro(result, out)
    result["files"] = [f for fig in figures for f in fig.files]
    if as_json:
        emit_json(result)
    else:
        print_table(result["rows"], ["heldout", "truncate", "judge", "pairs", "auroc", "tnr_at_fnr_0_2",
                                     "seconds_per_1000_pairs"])


COMMANDS = [judge_group]
