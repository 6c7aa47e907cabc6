"""Options shared by several `dp` commands, defined once as decorators."""

from __future__ import annotations

import json
import sys

import click

cache_option = click.option(
    "--cache", "cache_path", default="dp.duckdb", show_default=True, envvar="DP_CACHE",
    type=click.Path(dir_okay=False), help="The DuckDB trace cache file.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Seed for every random choice.")
truncate_option = click.option(
    "--truncate", default="words:25", show_default=True,
    help="Prefix rule: tokens:K (first K tokens) or words:K (up to the K-th reasoning word).",
)


dtype_option = click.option(
    "--dtype", default=None, type=click.Choice(["auto", "bfloat16", "float32"]),
    help="Engine dtype. Default float32 on a CPU (seeded traces repeat bit for bit whatever the batch); "
         "bfloat16 is faster there but not batch-invariant (README: Live runs).",
)


# (flag, setting name, type, help): every policy setting, shared by `dp simulate` and `dp live`
POLICY_SETTINGS = (
    ("--tau", "tau", float, "DeepPrune threshold in [0, 1] (0.5)."),
    ("--K", "K", int, "DeepPrune: max clusters (32)."),
    ("--K1", "K1", int, "DeepPrune: members sampled per cluster (10)."),
    ("--K2", "K2", int, "DeepPrune: traces of the largest cluster finished (20)."),
    ("--K3", "K3", int, "DeepPrune: traces finished when all clusters are singletons (16)."),
    ("--keep", "keep", int, "random: traces finished per problem (20)."),
    ("--window", "window", int, "esc: window size (5)."),
    ("--conf-window", "conf_window", int, "deepconf: tokens per confidence group (2048)."),
    ("--warmup", "warmup", int, "deepconf: warm-up traces (16)."),
    ("--confidence", "confidence", float, "adaptive: stopping confidence (0.95)."),
    ("--wave", "wave", int, "adaptive: traces started together (1)."),
    ("--similarity", "similarity", float, "slimsc: prune above this segment cosine (0.98)."),
    ("--every", "every", int, "slimsc: tokens between checkpoints (32)."),
)


def policy_settings_options(fn):
    """Add every policy setting as an option (default None = the policy's own default)."""
    for flag, name, kind, text in reversed(POLICY_SETTINGS):
        fn = click.option(flag, name, type=kind, default=None, help=text)(fn)
    return fn


def given_settings(kwargs: dict, extra: tuple[str, ...] = ()) -> dict:
    """The policy settings the user gave (plus `extra` names), from a command's kwargs."""
    names = [name for _, name, _, _ in POLICY_SETTINGS] + list(extra)
    return {k: kwargs[k] for k in names if kwargs.get(k) is not None}


def run_name(ctx, param, value):
    """click callback: a run name (or several) must not be blank."""
    values = value if isinstance(value, tuple) else (value,)
    if any(v is not None and not str(v).strip() for v in values):
        raise click.BadParameter("run names must not be empty")
    return value


def _verbose(ctx, param, value):
    import os

    if value:
        os.environ["DP_LOG"] = "info"  # read by dp.generate.engines.vllm_env before vLLM is imported
    return value


verbose_option = click.option("--verbose", is_flag=True, expose_value=False, callback=_verbose,
                              help="Show vLLM's own log (also DP_LOG=info); quiet by default.")


def run_option(required: bool = False, help: str = "Run name in the cache."):
    return click.option("--run", "run", required=required, default=None, callback=run_name, help=help)


def emit_json(obj) -> None:
    """Print `obj` as indented JSON (NaN written as null)."""
    sys.stdout.write(json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def _clean(obj):
    if isinstance(obj, float):
        return None if obj != obj or obj in (float("inf"), float("-inf")) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def print_table(rows: list[dict], columns: list[str], floats: str = "{:.4f}") -> None:
    """A plain aligned text table."""
    def fmt(v):
        if isinstance(v, float):
            return "nan" if v != v else floats.format(v)
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
