"""`dp frontier` and `dp tune`: which pruning method wins on a run at a budget, and with which settings
to serve it (the library calls are `dp.simulate.replay.frontier` and `dp.simulate.replay.tune`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dp.cli.options import (
    cache_option,
    emit_json,
    json_option,
    run_name,
    seed_option,
)

_common = [
    cache_option,
    click.option("--judge", "judges", multiple=True, default=["features"], show_default=True,
                 help="Judge of the judged families (repeatable: one DeepPrune family per judge)."),
    click.option("--truncate", "truncates", multiple=True, default=["words:25"], show_default=True,
                 help="Prefix rule tokens:K or words:K (repeatable: the prefix families run once per rule)."),
    click.option("--orders", default=20, show_default=True, type=click.IntRange(min=1),
                 help="Seeded arrival orders per problem (the same for every point)."),
    click.option("--crossfit", type=click.IntRange(min=2), default=None, metavar="K",
                 help="Cross-fit trainable judges over K folds of the run's problems (out of sample)."),
    click.option("--family", "families", multiple=True,
                 help="Only these families (repeatable; default all but slimsc): cons, random, short-m@k, "
                      "deepprune, deepprune-oracle, deepprune-conf, deepconf-low, deepconf-high, esc, adaptive, "
                      "slimsc."),
    click.option("--limit", type=int, default=None, help="Only the first N problems."),
    click.option("--no-store", is_flag=True,
                 help="Open the cache read-only: judge scores are not kept in its judge-score cache."),
    seed_option,
    json_option,
]


def _options(fn):
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


def _budgets(spec: str) -> tuple[float, ...]:
    from dp.errors import DPError

    try:
        vals = tuple(float(x) / 100 for x in spec.split(",") if x.strip())
    except ValueError:
        raise DPError(f"bad --budgets '{spec}': expected percentages like 10,25,50,75") from None
    if not vals:
        raise DPError("--budgets needs at least one percentage")
    return vals


def _settings(runs, judges, truncates, orders, crossfit, families, limit, seed, budgets="10,25,50,75"):
    from dp.simulate.replay.frontier import DEFAULT_FAMILIES, FrontierSettings

    return FrontierSettings(runs=tuple(runs), judges=tuple(judges), rules=tuple(truncates), orders=orders, seed=seed,
                            families=tuple(families) or DEFAULT_FAMILIES, budgets=_budgets(budgets),
                            crossfit=crossfit, limit=limit)


@click.command("frontier")
@click.option("--run", "runs", multiple=True, required=True, callback=run_name, help="Run (repeatable).")
@_options
@click.option("--budgets", default="10,25,50,75", show_default=True,
              help="Budgets in percent of cons@N's tokens.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Write frontier_RUN.json, frontier_RUN.png/.pdf and frontier.md here (`dp figures --out` "
                   "with the same folder draws them again).")
def frontier_cmd(cache_path, runs, judges, truncates, orders, crossfit, families, limit, no_store, seed, as_json,
                 budgets, out_dir):
    """Sweep every pruning family over a default grid: the Pareto front of accuracy against tokens, the
    best accuracy per budget with its standard error and settings, and its paired difference against random."""
    from dp.cache.store import Cache
    from dp.provenance import stamp
    from dp.simulate.replay.frontier import frontier
    from dp.simulate.replay.frontier_report import text_report

    s = _settings(runs, judges, truncates, orders, crossfit, families, limit, seed, budgets)
    with Cache(cache_path, write=not no_store) as cache:
        results = frontier(cache, s, progress=None if as_json else lambda m: click.echo(m, err=True))
    st = stamp()
    for r in results:
        r.update(cache=cache_path, **st)
    if out_dir:
        _write(results, Path(out_dir))
    if as_json:
        emit_json({"runs": results})
        return
    for r in results:
        click.echo(text_report(r))
    if out_dir:
        click.echo(f"wrote {out_dir}/frontier.md and one frontier_RUN.json / .png / .pdf per run")


def _write(results: list[dict], out: Path) -> None:
    from dp.figures.frontier import FRONTIER_PREFIX, frontier_figure
    from dp.simulate.replay.frontier_report import jsonable, markdown

    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        path = out / f"{FRONTIER_PREFIX}{r['run']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(jsonable(r), indent=1, allow_nan=False), encoding="utf-8")
        tmp.replace(path)
        frontier_figure(r, out)
    (out / "frontier.md").write_text("\n".join(markdown(r) for r in results), encoding="utf-8")



settings_option = click.option(
    "--settings", "settings_path", default=None, type=click.Path(dir_okay=False),
    help="A settings file written by `dp tune`: its policy, settings, judge and prefix rule (flags given "
         "explicitly win).")


def merge_settings(path, policies: tuple, params: dict, judge: str, truncate: str,
                   policy_param: str = "policies") -> tuple[tuple, dict, str, str]:
    """(policies, params, judge, truncate) with those of a `dp tune` settings file filled in where the
    command line left them at their defaults (`policy_param`: the command's name for --policy)."""
    from click.core import ParameterSource

    from dp.simulate.replay.tune import read_settings

    if not path:
        return policies, params, judge, truncate
    f = read_settings(path)
    ctx = click.get_current_context()

    def default(name: str) -> bool:
        return ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)

    params = {**f["params"], **{k: v for k, v in params.items() if v is not None}}
    policies = (f["policy"],) if default(policy_param) else policies
    judge = f["judge"] if f.get("judge") and default("judge") else judge
    truncate = f["truncate"] if f.get("truncate") and default("truncate") else truncate
    return policies, params, judge, truncate


@click.command("tune")
@click.option("--run", "run", required=True, callback=run_name, help="Run to tune on.")
@_options
@click.option("--tolerance", default=0.01, show_default=True, type=float,
              help="Accuracy below cons@N's that is acceptable (a share: 0.01 = one point).")
@click.option("--budget", default=None, type=float,
              help="Instead: the most accurate setting spending at most this percent of cons@N's tokens.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2),
              help="Problem folds: choose on the others, report on each.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Settings file to write (default tuned_RUN.json) for dp simulate/live/serve --settings.")
def tune_cmd(cache_path, run, judges, truncates, orders, crossfit, families, limit, no_store, seed, as_json, tolerance,
             budget, folds, out_path):
    """The cheapest policy and settings whose accuracy stays within --tolerance of cons@N, chosen on some
    problem folds and reported on the others; writes the settings file that --settings reads."""
    from dp.cache.store import Cache
    from dp.provenance import stamp
    from dp.simulate.replay.frontier import run_points
    from dp.simulate.replay.frontier_report import jsonable
    from dp.simulate.replay.tune import TuneSettings, settings_file, tune

    t = TuneSettings(tolerance=tolerance, budget=None if budget is None else budget / 100, folds=folds, seed=seed)
    s = _settings((run,), judges, truncates, orders, crossfit, families, limit, seed)
    with Cache(cache_path, write=not no_store) as cache:
        points, meta = run_points(cache, s, run, progress=None if as_json else lambda m: click.echo(m, err=True))
    result = tune(points, t)
    chosen = points[result.pop("chosen_index")]
    judge = chosen.params.get("judge_arg")
    doc = settings_file(meta, result, chosen.params, chosen.policy, judge, chosen.rule)
    if crossfit and judge:
        doc["note"] = (f"tuned with {judge} judges cross-fitted over {crossfit} folds; --settings loads the "
                       f"'{judge}' judge itself")
    path = Path(out_path or f"tuned_{run}.json")
    path.parent.mkdir(parents=True, exist_ok=True)  # `--out out/tuned.json` in a fresh clone
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False), encoding="utf-8")
    tmp.replace(path)
    out = {"run": run, "n": meta["n"], "problems": meta["problems"], "truncate": doc["truncate"], "judges": list(judges),
           "orders": orders, "settings_file": str(path), "policy": chosen.policy, "params": doc["params"],
           "judge": judge, **result, "cache": cache_path, **stamp()}
    if as_json:
        emit_json(out)
        return
    c = result["chosen"]
    goal = (f"most accurate within {budget:g}% of cons@N's tokens" if budget is not None
            else f"cheapest within {tolerance:g} of cons@N's accuracy")
    click.echo(f"run '{run}': {meta['problems']} problems x N = {meta['n']}, prefix rule{'s' if len(truncates) > 1 else ''} {', '.join(truncates)}, "
               f"{orders} orders, seed {seed}; {goal}, chosen on {folds - 1} of {folds} folds, reported on the other")
    click.echo(f"  held out: {_p(result['held_out_token_share'])} of cons@N's tokens (saving "
               f"{_p(result['held_out_token_saving'])}), accuracy {_f(result['held_out_accuracy'])} against "
               f"cons@N {_f(result['held_out_cons_accuracy'])} on the same problems")
    for f in result["per_fold"]:
        click.echo(f"  fold {f['fold']} ({f['problems']} problems): {f['chosen']} {f['settings']}: "
                   f"{_p(f['held_out_token_share'])} tokens, accuracy {_f(f['held_out_accuracy'])} "
                   f"(cons@N {_f(f['held_out_cons_accuracy'])})")
    click.echo(f"  to serve (chosen on all problems): {c['family']} {c['settings']}"
               + (f", judge {judge}" if judge else "") + f": {_p(c['in_sample_token_share'])} tokens, accuracy "
               f"{_f(c['in_sample_accuracy'])} on the problems it was chosen on (an upper bound)")
    click.echo(f"wrote {path}: dp simulate/live --settings {path}")


def _p(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _f(x) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"


COMMANDS = [frontier_cmd, tune_cmd]
