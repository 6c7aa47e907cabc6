"""`dp live`: run a pruning policy against the real engine and check the simulator's claim."""

from __future__ import annotations

import click

from dp.cli.frontier import merge_settings, settings_option
from dp.cli.options import (
    cache_option,
    dtype_option,
    emit_json,
    given_settings,
    json_option,
    policy_settings_options,
    run_name,
    seed_option,
    truncate_option,
    verbose_option,
)


@click.command("live")
@cache_option
@click.option("--run", "ref_run", required=True, callback=run_name, help="Cached run whose problems, prompts, settings and seeds are reused.")
@click.option("--live-run", default=None, callback=run_name, help="Name of the live run to store (default: RUN-live-POLICY-MODE).")
@click.option("--policy", "policies", multiple=True, default=["deepprune"], show_default=True,
              help="deepprune, deepprune-conf, cons, random, deepconf-low, deepconf-high, esc, adaptive, slimsc or short-m@k; "
                   "repeat it to run several in turn on one engine.")
@click.option("--judge", default="features", show_default=True, help="Judge name or trained judge directory.")
@policy_settings_options
@truncate_option
@click.option("--mode", "modes", multiple=True, default=["keep"], show_default=True,
              type=click.Choice(["keep", "resume"]),
              help="Prefix policies: keep: candidates decode until the clustering is done; resume: stop at the "
                   "prefix, resume the kept. Repeat it to run both.")
@click.option("--max-traces-in-flight", "max_traces", type=click.IntRange(min=1), default=None,
              help="Admit the next problem while fewer traces than this run on the engine "
                   "[default: the engine's batch, max_num_seqs; replay engine: 4 x N].")
@click.option("--max-problems-in-flight", "max_in_flight", type=click.IntRange(min=1), default=None,
              help="Also never more problems than this at once [default: no cap].")
@dtype_option
@click.option("--engine", type=click.Choice(["vllm", "replay"]), default="vllm", show_default=True,
              help="vllm: the real engine. replay: a stand-in for a GPU engine's pace that streams the cached "
                   "traces of RUN (any run, imported too) back as vLLM outputs; no model runs.")
@click.option("--replay-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --engine replay: engine tokens per second (default: as fast as dp takes them).")
@click.option("--limit", type=int, default=None, help="Only the first K problems of the run.")
@click.option("--compare", is_flag=True, help="Also replay the simulator in the live arrival order and time full generation.")
@click.option("--replace", is_flag=True, help="Overwrite a live run of the same name.")
@settings_option
@seed_option
@verbose_option
@json_option
def live_cmd(cache_path, ref_run, live_run, policies, judge, truncate, modes, max_traces, max_in_flight, dtype, engine,
             replay_rate, limit, compare, replace, seed, as_json, settings_path=None, **kwargs):
    """Run POLICY live on vLLM's async engine with the seeds of a cached run; store what it generated.
    Interrupted (Ctrl-C, SIGTERM), the run keeps its finished problems and is marked
    incomplete; the same command again resumes it."""
    from dp.cache.store import Cache
    from dp.errors import DPError
    from dp.provenance import stamp
    from dp.simulate.live.run import LiveSettings, run_lives
    from dp.simulate.policies.registry import has_modes

    params = given_settings(kwargs)
    policies, params, judge, truncate = merge_settings(settings_path, policies, params, judge, truncate)
    runs = [(p, m) for p in dict.fromkeys(policies) for m in dict.fromkeys(modes)
            if m == modes[0] or has_modes(p)]  # only prefix policies have two modes
    if live_run and len(runs) > 1:
        raise DPError("--live-run names one run; with several policies or modes the runs are named "
                      "RUN-live-POLICY-MODE")
    settings = [LiveSettings(reference_run=ref_run, live_run=live_run or f"{ref_run}-live-{policy}-{mode}",
                             policy=policy, params=params, judge=judge, truncate=truncate, mode=mode,
                             max_in_flight=max_in_flight, max_traces=max_traces, dtype=dtype, limit=limit, seed=seed, compare=compare,
                             replace=replace, engine=engine, replay_rate=replay_rate) for policy, mode in runs]
    if replay_rate is not None and engine != "replay":
        raise DPError("--replay-rate needs --engine replay")
    with Cache(cache_path, write=True) as cache:
        outs = run_lives(cache, settings, progress=not as_json)
    outs = [{**out, "cache": cache_path, **stamp()} for out in outs]
    if as_json:
        emit_json(outs[0] if len(outs) == 1 else {"runs": outs})
        return
    for out in outs:
        _echo(out, judge)


def _echo(out: dict, judge: str) -> None:
    click.echo(f"live run '{out['live_run']}' ({out['policy']}, {out['mode']} mode, {out['problems']} problems x "
               f"{out['n']} traces, seed {out['seed']}, truncate {out['truncate']}, judge {judge})")
    cap = f", at most {out['max_problems_in_flight']} problems" if out["max_problems_in_flight"] else ""
    click.echo(f"  live: {out['live_tokens']} tokens in {out['live_seconds']:.1f} s (problems admitted while < "
               f"{out['max_traces_in_flight']} traces run{cap}; peak {out['peak_traces_in_flight']}; "
               f"{out['dtype'] or 'replay stand-in'}), accuracy "
               + (f"{out['live_accuracy']:.3f} over {out['graded_problems']} problems with a gold answer, "
                  if out["live_accuracy"] is not None else "n/a (no problem has a gold answer), ") +
               f"judge {out['judge_seconds']:.2f} s for {out['judge_pairs']} pairs")
    if "simulated_tokens" in out:
        click.echo(f"  simulated ({out['accounting']} accounting): {out['simulated_tokens']} tokens; "
                   f"decisions matched {out['decisions_matched']}/{out['decisions_total']}")
        click.echo(f"  full generation of the same traces: {out['full_tokens']} tokens in "
                   f"{out['full_generation_seconds']:.1f} s")
        if out["token_cut"] is not None and out["wall_cut"] is not None:
            click.echo(f"  token cut {out['token_cut']:.1%}, wall-time cut {out['wall_cut']:.1%} "
                       f"(ratio {out['wall_to_token_cut'] or float('nan'):.2f})")


COMMANDS = [live_cmd]
