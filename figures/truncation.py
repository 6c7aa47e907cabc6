"""Figure 3, truncation ablation: one judge's AUROC against the prefix length k.

Left panel `tokens:k` (the first k tokens), right panel `words:k` (up to the k-th
reasoning word, `dp.judge.truncation`), one line per run. Every rule is scored on
the same seeded pairs (`dp.judge.sampled_pairs`: the selection does not depend on the
rule), so only the prefixes change; the table adds the mean prefix length in
tokens, the judge's input cost. It evaluates one judge and simulates no pruning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dp.cache.store import Cache
from dp.figures.common import FigureResult, color, new_figure, save
from dp.judge.metrics import auroc, tnr_at_fnr
from dp.judge.sampled_pairs import both_labels, judge_scores, sample_pairs, try_load

NAME = "truncation"


def truncation_figure(cache: Cache, runs: list[str], out_dir: Path, judge_name: str,
                      token_ks: tuple[int, ...], word_ks: tuple[int, ...], max_pairs: int,
                      seed: int) -> FigureResult:
    res = FigureResult(
        NAME, f"Truncation ablation ({judge_name} judge)",
        f"AUROC of the {judge_name} judge on the same pairs (at most {max_pairs} per run) when each "
        "trace is cut after k tokens (left) or after its k-th reasoning word (right).")
    judge, why = try_load(judge_name, seed)
    if judge is None:
        return res.skip(f"judge '{judge_name}' cannot be loaded: {why}")
    rules = [("tokens", int(k)) for k in token_ks] + [("words", int(k)) for k in word_ks]
    for run in runs:
        for kind, k in rules:
            rule = f"{kind}:{k}"
            pairs = sample_pairs(cache, run, rule, max_pairs, seed)
            if not both_labels(pairs):
                res.notes.append(f"run '{run}', {rule}: pairs of one label only; AUROC undefined")
                continue
            s = judge_scores(cache, judge, pairs)
            tokens = np.array([p.n_tokens for p in (*pairs.left, *pairs.right)], dtype=float)
            res.rows.append({"run": run, "rule": rule, "kind": kind, "k": k, "pairs": pairs.n,
                             "mean_prefix_tokens": float(tokens.mean()),
                             "auroc": auroc(s, pairs.labels), "tnr_at_fnr_0_2": tnr_at_fnr(s, pairs.labels, 0.2)})
    if not res.rows:
        return res.skip("no run has pairs of both labels")
    res.columns = ["run", "rule", "pairs", "mean_prefix_tokens", "auroc", "tnr_at_fnr_0_2"]
    res.data = {"judge": judge_name, "judge_key": judge.name, "max_pairs_per_run": max_pairs, "seed": seed}

    fig, axes = new_figure(2, width=4.0, sharey=True)
    for ax, kind in zip(axes, ("tokens", "words"), strict=True):
        for i, run in enumerate(runs):
            pts = [(r["k"], r["auroc"]) for r in res.rows if r["run"] == run and r["kind"] == kind]
            if pts:
                ks, aucs = zip(*pts, strict=True)
                ax.plot(ks, aucs, marker="o", color=color(i), label=run)
        ax.axhline(0.5, ls=":", color="grey", lw=1)
        ax.set_xscale("log")
        ks = token_ks if kind == "tokens" else word_ks
        ax.set_xticks(list(ks), [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (tokens)" if kind == "tokens" else "k (reasoning words)")
        ax.set_title(f"{kind}:k")
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"AUROC ({judge_name})")
    res.files = save(fig, out_dir, NAME)
    return res
