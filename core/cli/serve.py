"""`dp serve`: pruned parallel reasoning behind an OpenAI-compatible endpoint (`dp.simulate.serve.app`)."""

from __future__ import annotations

import click

from dp.cli.frontier import merge_settings, settings_option
from dp.cli.options import (
    given_settings,
    policy_settings_options,
    run_name,
    seed_option,
    truncate_option,
    verbose_option,
)

SERVABLE = ("deepprune, deepprune-conf, cons, random, deepconf-low, deepconf-high, esc, adaptive, slimsc "
            "or short-m@k")


@click.command("serve")
@click.option("--model", default="smollm2-135m", show_default=True, help="Model alias or local model folder.")
@click.option("--n", "n", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Parallel traces per request (a request's `n` overrides it).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Tokens per trace at most (a request's `max_tokens` overrides it).")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True)
@click.option("--policy", default="deepprune", show_default=True,
              help=f"The default policy of a request (a request's dp.policy overrides it): {SERVABLE}.")
@click.option("--judge", default="features", show_default=True, help="Judge name or trained judge directory.")
@policy_settings_options
@truncate_option
@click.option("--mode", default="keep", show_default=True, type=click.Choice(["keep", "resume"]),
              help="keep: candidates decode until the clustering is done; resume: stop at the prefix, resume the kept.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-concurrent", type=click.IntRange(min=1), default=16, show_default=True,
              help="Requests in flight at most; one more is answered 429.")
@click.option("--record", "record", default=None, type=click.Path(dir_okay=False),
              help="Cache file: store every served request as a problem of a `serve` run.")
@click.option("--record-run", default=None, callback=run_name,
              help="Name of the recorded run (default: serve-YYYYMMDD-HHMMSS, UTC).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              help="Seconds SIGTERM waits for requests in flight before cancelling them.")
@click.option("--api-key", default=None, envvar="DP_API_KEY",
              help="Require 'Authorization: Bearer KEY' on the /v1 routes (also DP_API_KEY); /health and "
                   "/metrics stay open.")
@click.option("--engine", type=click.Choice(["vllm", "replay"]), default="vllm", show_default=True,
              help="replay: a stand-in for a GPU engine's pace that streams the cached traces of --run (a request "
                   "asks one of its problems); no model runs.")
@click.option("--run", "replay_run", default=None, help="With --engine replay: the cached run to stream.")
@click.option("--cache", "replay_cache", default=None, type=click.Path(dir_okay=False),
              help="With --engine replay: the cache holding --run (default: the default cache).")
@click.option("--replay-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --engine replay: engine tokens per second (default: as fast as dp takes them).")
@settings_option
@seed_option
@verbose_option
def serve_cmd(model, n, max_tokens, temperature, top_p, policy, judge, truncate, mode, host, port, max_concurrent,
              record, record_run, drain_timeout, api_key, engine, replay_run, replay_cache,
              replay_rate, seed, settings_path=None,
              **kwargs):
    """Serve POST /v1/chat/completions (OpenAI schema; `n` = parallel traces, policy knobs in the
    extra field "dp"), GET /v1/models, /health and /metrics on one vLLM engine. SIGTERM drains
    the requests in flight, shuts the engine down and exits 0."""
    import os

    from dp.errors import DPError
    from dp.judge.truncation import TruncationRule
    from dp.simulate.live.checks import prune_warnings, setting_error
    from dp.simulate.policies.registry import make_policy
    from dp.simulate.serve.app import MAX_MODEL_LEN, ServeSettings
    from dp.simulate.serve.request import ServerDefaults, live_policies, live_policy
    from dp.simulate.serve.run import serve

    make_engine, replay_db = None, None
    if engine == "replay":
        from dp.cache.store import DEFAULT_CACHE, Cache
        from dp.generate.replay_engine import replay_stream_engine

        if not replay_run:
            raise DPError("--engine replay needs --run (the cached run to stream)")
        replay_db = Cache(replay_cache or DEFAULT_CACHE)
        model = replay_db.run_info(replay_run)["model"]

        def make_engine():
            return replay_stream_engine(replay_db, replay_run, rate=replay_rate)
    elif replay_run or replay_cache or replay_rate is not None:
        raise DPError("--run, --cache and --replay-rate need --engine replay")
    params = given_settings(kwargs)
    (policy,), params, judge, truncate = merge_settings(settings_path, (policy,), params, judge, truncate, "policy")
    if api_key is not None and not api_key.strip():
        raise DPError("--api-key (DP_API_KEY) must not be empty")
    for k, v in params.items():
        why = setting_error(k, v, ServerDefaults.max_n, MAX_MODEL_LEN)
        if why is not None:
            raise DPError(f"--{k.replace('_', '-')}: {why}")
    built = make_policy(policy, **params)
    if not live_policy(built):
        raise DPError(f"policy '{policy}' has no live form (served: {', '.join(live_policies())})")
    rule = TruncationRule.parse(truncate)
    truncate = str(rule)
    for w in prune_warnings(built, n, max_tokens, rule):
        click.echo(f"warning: {w} (the server's defaults; a request may set others)", err=True)
    defaults = ServerDefaults(model=model, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                              policy=policy, params=params, judge=judge, truncate=truncate, mode=mode, seed=seed)
    settings = ServeSettings(defaults=defaults, host=host, port=port, max_concurrent=max_concurrent, record=record,
                             record_run=record_run, drain_timeout=drain_timeout,
                             verbose=bool(os.environ.get("DP_LOG")), api_key=api_key)

    def ready(run: str | None) -> None:
        click.echo(f"dp serve: {model} on http://{host}:{port}/v1 (policy {policy} {params or ''}, n {n}, "
                   f"truncate {truncate}, judge {judge}, mode {mode}, seed {seed}"
                   + ("; API key required" if api_key else "")
                   + (f"; recording run '{run}' in {record}" if run else "") + ")")

    try:
        out = serve(settings, on_ready=ready, make_engine=make_engine)
    finally:
        if replay_db is not None:
            replay_db.close()
    click.echo(f"dp serve: stopped after {out.get('answered', 0)} answered requests; engine shut down")


COMMANDS = [serve_cmd]
