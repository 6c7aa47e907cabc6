"""`dp simulate`: replay DeepPrune and the baselines on cached traces."""

from __future__ import annotations

import click

from dp.cli.options import (
    cache_option,
    emit_json,
    given_settings,
    json_option,
    policy_settings_options,
    print_table,
    seed_option,
    truncate_option,
)

DEFAULT_RUN = "default"


def pick_run(cache, run: str | None) -> str:
    """--run, else the embedded default run, else the only run in the cache."""
    from dp.errors import DPError

    if run:
        return run
    runs = cache.runs()
    if DEFAULT_RUN in runs:
        return DEFAULT_RUN
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise DPError(f"{cache.path} has no runs; run `dp generate` or `dp import` first")
    raise DPError(f"{cache.path} has several runs ({', '.join(runs)}); choose one with --run")


@click.command("simulate")
@cache_option
@click.option("--run", "run", default=None, help="Run to replay (default: 'default' or the only run).")
@click.option("--policy", "policies", multiple=True,
              help="Policy to replay (repeatable): cons, deepprune, deepprune-oracle, deepconf-low, "
                   "deepconf-high, esc, adaptive, random, slimsc. Default: deepprune and cons.")
@click.option("--judge", default="features", show_default=True, help="Judge name or trained judge directory.")
@policy_settings_options
@click.option("--final", default=None, type=click.Choice(["largest", "representatives", "representatives-weighted"]),
              help="DeepPrune final-answer variant (largest).")
@click.option("--when-full", "when_full", default=None, type=click.Choice(["join", "prune"]),
              help="DeepPrune with K clusters: join the best cluster or drop the trace (join).")
@click.option("--accounting", default=None, type=click.Choice(["paper", "concurrent"]),
              help="Token accounting for prefix policies (paper).")
@truncate_option
@click.option("--orders", default=50, show_default=True, type=int, help="Seeded arrival orders per problem.")
@click.option("--order", "order_kind", default="random", show_default=True,
              type=click.Choice(["random", "prefix-length", "live"]),
              help="Arrival orders: random, by decision point, or live (the order recorded by dp live / dp serve).")
@click.option("--sweep", multiple=True, help="Grid axis NAME=START:STOP:STEP or NAME=V1,V2 (repeatable).")
@click.option("--limit", type=int, default=None, help="Only the first N problems.")
@click.option("--no-store", is_flag=True, help="Do not store the points in the cache.")
@click.option("--crossfit", type=click.IntRange(min=2), default=None, metavar="K",
              help="Train K judges of the --judge type on folds of the run's problems; each problem is "
                   "scored by the judge that never saw it (each trained on <= 20 pairs per problem).")
@seed_option
@json_option
def simulate_cmd(cache_path, run, policies, judge, final, when_full, accounting, truncate, orders, order_kind, sweep,
                 limit, no_store, crossfit, seed, as_json, **kwargs):
    """Replay pruning policies on cached traces: tokens, token reduction, accuracy, pass rate."""
    from dp.cache.store import Cache
    from dp.provenance import stamp
    from dp.simulate.replay.sweep import SimSettings, simulate

    params = {**given_settings(kwargs), "final": final, "when_full": when_full, "accounting": accounting}
    with Cache(cache_path, write=not no_store) as cache:
        name = pick_run(cache, run)
        settings = SimSettings(
            run=name, policies=tuple(policies) or ("deepprune", "cons"), judge=judge, truncate=truncate,
            orders=orders, order_kind=order_kind, seed=seed,
            params={k: v for k, v in params.items() if v is not None}, sweep=tuple(sweep), limit=limit,
            crossfit=crossfit,
        )
        results = simulate(cache, settings, store=not no_store)
    st = stamp()
    for w in dict.fromkeys(w for r in results for w in r.warnings):
        click.echo(f"warning: {w}", err=True)
    rows = [{**r.summary(), "run": name, "cache": cache_path, **st} for r in results]
    if as_json:
        emit_json(rows)
        return
    click.echo(f"run '{name}' of {cache_path}: {results[0].problems} problems, {orders} arrival orders "
               f"({order_kind} for prefix policies, random for the others), seed {seed}, truncate {truncate}, "
               f"judge {judge}" + (f" cross-fitted over {crossfit} folds" if crossfit else ""))
    table = []
    for r in results:
        p = r.params
        setting = " ".join(f"{k}={v}" for k, v in p.items() if k in ("tau", "accounting", "keep", "window", "conf_window", "percentile", "wave", "confidence", "similarity", "every")
                           or (k in {x.split('=')[0] for x in sweep}))
        share = "" if r.prefix_share is None else f"{r.prefix_share:.2f}"
        table.append({"policy": r.policy, "settings": setting, "tokens": f"{r.tokens:.0f}",
                      "token_reduction": f"{100 * r.token_reduction:.1f}%", "accuracy": r.accuracy,
                      "accuracy_std": r.accuracy_std, "pass_rate": r.pass_rate, "prefix_share": share,
                      "judge_pairs": f"{r.judge_pairs:.0f}"})
        s = r.summary()
        for c, label in (("matched", "matched random"), ("token_matched", "token-matched random")):
            if f"{c}_tokens" in s:
                se = s[f"{c}_accuracy_diff_se"]
                table.append({"policy": f"  {label}", "settings": "same orders",
                              "tokens": f"{s[f'{c}_tokens']:.0f}",
                              "token_reduction": f"{100 * s[f'{c}_token_reduction']:.1f}%",
                              "accuracy": s[f"{c}_accuracy"], "accuracy_std": "", "pass_rate": s[f"{c}_pass_rate"],
                              "prefix_share": share,
                              "judge_pairs": "diff acc " + f"{s[f'{c}_accuracy_diff']:+.4f}"
                                             + (f" ± {se:.4f}" if se is not None else "")})
    print_table(table, ["policy", "settings", "tokens", "token_reduction", "accuracy", "accuracy_std",
                        "pass_rate", "prefix_share", "judge_pairs"])
    click.echo("tokens: mean over orders, summed over problems; accounting as in 'settings' "
               "(prefix policies: paper = prefixes + finished traces; others: tokens generated). "
               "Matched rows: random pruning at the policy's own budget on the same orders; "
               "'diff acc' = policy minus control, ± its standard error over orders.")


COMMANDS = [simulate_cmd]
