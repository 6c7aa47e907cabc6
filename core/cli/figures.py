"""`dp figures`: regenerate every figure of a cache as PNG and PDF, with report.md and figures.json."""

from __future__ import annotations

import click

from dp.cli.options import (
    cache_option,
    emit_json,
    json_option,
    print_table,
    run_name,
    seed_option,
    truncate_option,
)


@click.command("figures")
@cache_option
@click.option("--run", "runs", multiple=True, callback=run_name, help="Run to draw (repeatable; default: every run).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the figures, report.md and figures.json.")
@click.option("--judge", "judges", multiple=True,
              help="Judge name or trained-judge directory (repeatable). The first drives DeepPrune; all are "
                   "added to the ROC figure. Default: features, else jaccard (noted in the report).")
@truncate_option
@click.option("--orders", default=20, show_default=True, type=click.IntRange(min=1),
              help="Seeded arrival orders per problem.")
@click.option("--order", "order_kind", default="random", show_default=True,
              type=click.Choice(["random", "prefix-length"]), help="Arrival orders: random, or by decision point.")
@click.option("--tau", default=0.5, show_default=True, type=float, help="DeepPrune threshold of the main table.")
@click.option("--taus", default="0.05:0.95:0.05", show_default=True,
              help="Threshold ablation grid: START:STOP:STEP (stop included) or V1,V2,...")
@click.option("--token-ks", default="25,50,100,200,500", show_default=True,
              help="Truncation ablation: k values of tokens:k.")
@click.option("--word-ks", default="5,10,25,50", show_default=True,
              help="Truncation ablation: k values of words:k.")
@click.option("--ablation-judge", default=None, help="Judge of the truncation ablation (default: the first judge).")
@click.option("--max-pairs", default=2000, show_default=True, type=click.IntRange(min=2),
              help="Judge pairs sampled per run for the ROC and truncation figures.")
@click.option("--fresh", is_flag=True, help="Recompute every simulator point instead of reusing stored ones.")
@seed_option
@json_option
def figures_cmd(cache_path, runs, out_dir, judges, truncate, orders, order_kind, tau, taus, token_ks, word_ks,
                ablation_judge, max_pairs, fresh, seed, as_json):
    """Draw every figure (redundancy, judge ROC, truncation and threshold ablations, main table,
    Pareto, live vs simulated) from a cache; simulator points are read from or stored in the cache."""
    from pathlib import Path

    from dp.cache.store import Cache
    from dp.errors import DPError
    from dp.figures import FigureSettings, make_figures

    def ks(spec: str, name: str) -> tuple[int, ...]:
        try:
            return tuple(int(k) for k in spec.split(",") if k.strip())
        except ValueError:
            raise DPError(f"--{name} must be integers separated by commas, got '{spec}'") from None

    settings = FigureSettings(
        judges=tuple(judges), truncate=truncate, orders=orders, order_kind=order_kind, seed=seed, tau=tau,
        taus=FigureSettings.parse_taus(taus), token_ks=ks(token_ks, "token-ks"), word_ks=ks(word_ks, "word-ks"),
        ablation_judge=ablation_judge, max_pairs=max_pairs, fresh=fresh)
    if not Path(cache_path).exists():
        raise DPError(f"no cache at {cache_path}")
    new_out = not Path(out_dir).exists()
    try:
        with Cache(cache_path, write=True) as cache:
            report = make_figures(cache, list(runs) or None, out_dir, settings)
    except BaseException:
        if new_out:  # a failed command leaves no new folder behind
            import shutil

            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    if as_json:
        emit_json({"report": str(report.markdown_path), "json": str(report.json_path),
                   **{k: v for k, v in report.to_json().items() if k != "figures"},
                   "figures": {f.name: {"files": f.files, "skipped": f.skipped, "notes": f.notes}
                               for f in report.figures}})
        return
    print_table([{"figure": f.name, "files": " ".join(f.files), "skipped": f.skipped or "",
                  "notes": len(f.notes) or ""} for f in report.figures], ["figure", "files", "skipped", "notes"])
    click.echo(f"report: {report.markdown_path} (numbers: {report.json_path}); simulator points: "
               f"{report.points['reused']} reused, {report.points['computed']} computed and stored")


COMMANDS = [figures_cmd]
