"""`dp generate`: sample N traces per problem on a real engine into the cache, resumably."""

from __future__ import annotations

from pathlib import Path

import click

from dp.cli.options import (
    cache_option,
    dtype_option,
    emit_json,
    json_option,
    run_name,
    verbose_option,
)

DEFAULT_RUN = "default"
WRITER_WAIT_S = 600.0  # a batch writer waits this long for others (a `dp figures` run) to let go of the cache


def parse_shard(text: str) -> tuple[int, int]:
    from dp.errors import DPError

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise DPError(f"bad shard '{text}': expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise DPError(f"bad shard '{text}': need 0 <= i < n")
    return i, n


def load_problems(dataset: str | None, data: str | None, limit: int | None, seed: int):
    """Problems from a named dataset or a file (exactly one of them)."""
    from dp.errors import DPError
    from dp.problems import load_dataset, load_file

    if dataset and data:
        raise DPError("give either --dataset or --data, not both")
    if data:
        return load_file(data, seed=seed, limit=limit), str(data)
    name = dataset or "arith"
    return load_dataset(name, limit=limit), name


@click.command("generate")
@cache_option
@click.option("--model", default="smollm2-135m", show_default=True,
              help="Model: the alias smollm2-135m (embedded) or a local HF model directory.")
@click.option("--dataset", default=None, help="Named dataset (arith, aime24, aime25, math500, gsm8k, ...); default arith.")
@click.option("--data", default=None, type=click.Path(dir_okay=False), help="Problem file (JSONL or GPQA CSV).")
@click.option("--n", "n", default=16, show_default=True, type=int, help="Traces per problem.")
@click.option("--max-tokens", default=256, show_default=True, type=int, help="Generated tokens per trace at most.")
@click.option("--temperature", default=0.7, show_default=True, type=float)
@click.option("--top-p", default=0.95, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int, help="Run seed; each trace's seed derives from it.")
@click.option("--run", "run", default=DEFAULT_RUN, show_default=True, callback=run_name, help="Run name in the cache.")
@click.option("--limit", default=None, type=int, help="Only the first K problems.")
@click.option("--engine", "engine_kind", default="vllm", show_default=True,
              type=click.Choice(["vllm", "transformers"]))
@click.option("--shard", default="0/1", show_default=True, help="Generate only problems p with p % n == i.")
@click.option("--store-topk", is_flag=True, help="Also store the top-k alternatives of every token (large).")
@dtype_option
@click.option("--enforce-eager", is_flag=True, help="vLLM: skip torch.compile (loads ~4x faster, decodes ~15% slower).")
@click.option("--replace", is_flag=True, help="Delete an existing run of this name first.")
@click.option("--batch", "batch_traces", default=64, show_default=True, type=int,
              help="Traces per engine batch and per cache transaction (a kill loses at most one batch).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--replicas", default=None, type=int,
              help="Run R engine replicas as Ray actors fed per problem; the driver alone writes (needs the ray extra).")
@click.option("--ray-address", default=None, help="Join this Ray cluster (e.g. auto, HOST:6379) instead of a local one.")
@click.option("--tensor-parallel-size", default=1, show_default=True, type=int, help="vLLM: GPUs per engine (replica).")
@verbose_option
@json_option
def generate_cmd(cache_path, model, dataset, data, n, max_tokens, temperature, top_p, seed, run, limit,
                 engine_kind, shard, store_topk, dtype, enforce_eager, replace, batch_traces, no_progress,
                 replicas, ray_address, tensor_parallel_size, as_json):
    """Sample traces into the cache. With no options: the embedded default run
    (12 arithmetic problems x 16 traces on SmolLM2-135M). Running the same command
    again finishes what is missing and never duplicates a trace. The cache is
    locked only while a batch is written, so `dp cache info` can watch."""
    from dp.cache.store import Cache, RunInfo
    from dp.errors import DPError
    from dp.generate.engines import make_engine
    from dp.generate.prompts import PROMPT_TEMPLATE_ID, prompt_template
    from dp.generate.runner import generate_run, shard_problems
    from dp.generate.sampling import SamplingSpec
    from dp.models import load_tokenizer, resolve_model
    from dp.provenance import stamp

    # every check on the user's input happens before the cache or the engine is touched
    spec = SamplingSpec(n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                        store_topk=store_topk)
    problems, dataset_name = load_problems(dataset, data, limit, seed)
    shard_t = parse_shard(shard)
    if replicas is not None or ray_address:
        from dp.generate.distributed import check_replicas

        check_replicas(replicas, ray_address)
    if tensor_parallel_size < 1 or (tensor_parallel_size > 1 and engine_kind != "vllm"):
        raise DPError(f"--tensor-parallel-size must be 1, or > 1 with --engine vllm; got {tensor_parallel_size}")
    resolve_model(model)
    tokenizer = load_tokenizer(model)
    kinds = sorted({p.kind.value for p in problems})
    template = " | ".join(prompt_template(tokenizer, k) for k in kinds)
    info = RunInfo(run=run, model=model, engine=engine_kind, tokenizer=model, source="generate",
                   dataset=dataset_name, n=n, seed=seed, sampling=spec.to_dict(),
                   prompt_template=f"{PROMPT_TEMPLATE_ID}: {template}")
    done, have_run = set(), False
    if Path(cache_path).exists():  # a read-only look: resume check, what is missing
        with Cache(cache_path) as cache:
            have_run = cache.has_run(run)
            if have_run and not replace:
                cache.check_resumable(info)  # raises if the settings differ
                stored = (cache.run_info(run)["settings"] or {}).get("engine", {}).get("dtype")
                if dtype and stored and dtype != stored:  # a run never mixes traces of two dtypes
                    raise DPError(f"run '{run}' was generated with dtype {stored}; resume it with --dtype {stored} "
                                  "or use --replace / another --run")
                done = cache.done_keys(run)
    missing = sum((p.problem_id, i) not in done for p in shard_problems(problems, shard_t) for i in range(n))
    if missing == 0 and have_run and not replace:  # nothing to do: no engine start, no write
        out = {"run": run, "cache": cache_path, "traces": 0, "tokens": 0, "skipped": len(done),
               "run_traces": len(done), **stamp()}
        emit_json(out) if as_json else click.echo(f"run '{run}': nothing to generate ({len(done)} traces there)")
        return
    kw = {"enforce_eager": enforce_eager} if engine_kind == "vllm" else {}
    if dtype and (engine_kind == "vllm" or dtype != "auto"):
        kw["dtype"] = dtype
    if replicas:  # R engines on Ray (dp.generate.distributed); the driver alone writes the cache
        from dp.generate.distributed import ReplicaPool

        engine = ReplicaPool(replicas, engine_kind, model, kw, address=ray_address,
                             tensor_parallel_size=tensor_parallel_size)
    else:
        if tensor_parallel_size > 1:
            kw["tensor_parallel_size"] = tensor_parallel_size
        engine = make_engine(engine_kind, model, **kw)  # the cache is created only once the engine runs
    try:
        info = RunInfo(**{**info.__dict__, "engine": engine.name,
                          "settings": {"engine": engine.settings(), "shard": shard}})
        with Cache(cache_path, write=True, wait=WRITER_WAIT_S) as cache, cache.transaction():
            cache.create_run(info, replace=replace, resume=not replace)
            cache.add_problems(run, problems)
            done = cache.done_keys(run)

        def sink(records):  # the write lock is held only while a batch is written
            with Cache(cache_path, write=True, wait=WRITER_WAIT_S) as cache:
                cache.write_traces(run, records)

        sample = engine.run if replicas else (lambda *a, **k: generate_run(engine, *a, **k))
        stats = sample(problems, spec, done, sink, shard=shard_t, progress=not no_progress,
                       batch_traces=batch_traces)
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()
    with Cache(cache_path, wait=WRITER_WAIT_S) as cache:
        total = cache.run_totals(run)
    out = {"run": run, "cache": cache_path, "engine": engine.name, "model": model, "dataset": dataset_name,
           "sampling": spec.to_dict(), "shard": shard, **stats, "run_traces": total[0], "run_tokens": total[1],
           **stamp()}
    if as_json:
        emit_json(out)
    else:
        click.echo(f"run '{run}': {stats['traces']} new traces ({stats['tokens']} tokens, "
                   f"{stats['tokens_per_s']} tok/s, {stats['skipped']} already there); "
                   f"{total[0]} traces in the run, {cache_path}")


COMMANDS = [generate_cmd]
