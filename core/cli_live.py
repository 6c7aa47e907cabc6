"""`dp live`: run a pruning policy against the real engine and check the simulator's claim."""

from __future__ import annotations

import click

from dp.cli_options import (
    cache_option,
    emit_json,
    json_option,
    run_name,
    seed_option,
    truncate_option,
    verbose_option,
)


@click.command("live")
@cache_option
@click.option("--run", "ref_run", required=True, callback=run_name, help="Cached run whose problems, prompts, settings and seeds are reused.")
@click.option("--live-run", default=None, callback=run_name, help="Name of the live run to store (default: RUN-live-POLICY-MODE).")
@click.option("--policy", default="deepprune", show_default=True, help="A prefix policy: deepprune, cons or random.")
@click.option("--judge", default="features", show_default=True, help="Judge name or trained judge directory.")
@click.option("--tau", type=float, default=None, help="DeepPrune threshold (0.5).")
@click.option("--K", "K", type=int, default=None)
@click.option("--K1", "K1", type=int, default=None)
@click.option("--K2", "K2", type=int, default=None)
@click.option("--K3", "K3", type=int, default=None)
@truncate_option
@click.option("--mode", default="keep", show_default=True, type=click.Choice(["keep", "resume"]),
              help="keep: candidates decode until the clustering is done; resume: stop at the prefix, resume the kept.")
@click.option("--limit", type=int, default=None, help="Only the first K problems of the run.")
@click.option("--compare", is_flag=True, help="Also replay the simulator in the live arrival order and time full generation.")
@click.option("--replace", is_flag=True, help="Overwrite a live run of the same name.")
@seed_option
@verbose_option
@json_option
def live_cmd(cache_path, ref_run, live_run, policy, judge, tau, K, K1, K2, K3, truncate, mode, limit, compare,
             replace, seed, as_json):
    """Run POLICY live on vLLM's async engine with the seeds of a cached run; store what it generated.
    Interrupted (Ctrl-C, SIGTERM), the run keeps its finished problems and is marked
    incomplete; the same command again resumes it."""
    from dp.cache.store import Cache
    from dp.provenance import stamp
    from dp.simulate.live_run import LiveSettings, run_live

    params = {k: v for k, v in {"tau": tau, "K": K, "K1": K1, "K2": K2, "K3": K3}.items() if v is not None}
    settings = LiveSettings(reference_run=ref_run, live_run=live_run or f"{ref_run}-live-{policy}-{mode}",
                            policy=policy, params=params, judge=judge, truncate=truncate, mode=mode,
                            limit=limit, seed=seed, compare=compare, replace=replace)
    with Cache(cache_path, write=True) as cache:
        out = run_live(cache, settings, progress=not as_json)
    out = {**out, "cache": cache_path, **stamp()}
    if as_json:
        emit_json(out)
        return
    click.echo(f"live run '{out['live_run']}' ({settings.mode} mode, {out['problems']} problems x {out['n']} traces, "
               f"seed {seed}, truncate {truncate}, judge {judge})")
    click.echo(f"  live: {out['live_tokens']} tokens in {out['live_seconds']:.1f} s, accuracy {out['live_accuracy']:.3f}, "
               f"judge {out['judge_seconds']:.2f} s for {out['judge_pairs']} pairs")
    if compare:
        click.echo(f"  simulated ({out['accounting']} accounting): {out['simulated_tokens']} tokens; "
                   f"decisions matched {out['decisions_matched']}/{out['decisions_total']}")
        click.echo(f"  full generation of the same traces: {out['full_tokens']} tokens in "
                   f"{out['full_generation_seconds']:.1f} s")


COMMANDS = [live_cmd]
