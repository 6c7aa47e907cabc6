"""A frontier result (`dp.simulate.replay.frontier`) as a text table and as markdown a user can paste.

Both name the run, N, the prefix rule, the orders and the judge of every point;
budget cells read `accuracy ± standard error (token share; settings)` and the
paired difference against random pruning within the same budget. Formats only:
computes nothing.
"""

from __future__ import annotations


def jsonable(obj):
    """`obj` with NaN and infinities as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _acc(x, se=None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def _diff(v) -> str:
    if not v or v.get("accuracy_diff") is None or v["accuracy_diff"] != v["accuracy_diff"]:
        return ""
    se = v.get("accuracy_diff_se")
    return f"{v['accuracy_diff']:+.3f}" + (f" ± {se:.3f}" if se is not None else "")


def header(r: dict) -> str:
    n = f"N = {r['n']}" if r["n"] == r["n_min"] else f"N = {r['n_min']}..{r['n']}"
    judge = ", ".join(r["judges"]) + (f" (cross-fitted over {r['crossfit']} folds)" if r.get("crossfit") else "")
    acc = _acc(r["cons_accuracy"])
    return (f"run '{r['run']}': {r['problems']} problems x {n} traces, prefix rule{'s' if len(r['rules']) > 1 else ''} {r['truncate']}, "
            f"judge {judge}, {r['orders']} arrival orders, seed {r['seed']}; cons@N: {r['full_tokens']:.0f} "
            f"tokens, accuracy {acc}")


def _cells(r: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the budget table: one row per family, one cell per budget."""
    budgets = r["budgets"]
    cols = ["family"] + [f"<= {100 * b:g}% tokens" for b in budgets] + [f"vs random @{100 * b:g}%" for b in budgets]
    rows = []
    by = {(x["family"], x["budget"]): x for x in r["table"]}
    for fam in dict.fromkeys(x["family"] for x in r["table"] if x["family"] != "cons"):
        cells, diffs = [], []
        for b in budgets:
            x = by[(fam, b)]
            p = x["point"]
            cells.append("-" if p is None else f"{_acc(p['accuracy'], p['accuracy_se'])} "
                                               f"({_pct(p['token_share'])}; {p['settings']})")
            diffs.append(_diff(x["vs_random"]))
        rows.append([fam, *cells, *diffs])
    return cols, rows


def _front_rows(r: dict) -> list[list[str]]:
    return [[p["family"], p["settings"], _pct(p["token_share"]), _acc(p["accuracy"], p["accuracy_se"]),
             f"{p['accuracy_std']:.3f}" if p["accuracy_std"] is not None else "-",
             f"{p['tokens_std']:.0f}"] for p in r["front"]]


FRONT_COLS = ["family", "settings", "tokens vs cons@N", "accuracy ± se (problems)", "accuracy std (orders)",
              "tokens std (orders)"]


def _aligned(cols: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def text_report(r: dict) -> str:
    cols, rows = _cells(r)
    parts = [header(r), "", "Best accuracy within each budget (± standard error over problems; token share; "
             "settings), and its paired difference against the best random pruning within the same budget:",
             _aligned(cols, rows), "", "Pareto front (out-of-sample points only):",
             _aligned(FRONT_COLS, _front_rows(r))]
    parts += [f"note: {n}" for n in r["notes"]]
    parts.append(f"{len(r['points'])} points in {r['seconds']:.0f} s")
    return "\n".join(parts) + "\n"


def _md_table(cols: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(row) + " |" for row in esc])


def _bound(r: dict, b: float) -> str:
    """The oracle judge's best accuracy within budget b, as a clause (empty when not replayed)."""
    xs = [x for x in r["table"] if x["budget"] == b and x["point"] is not None
          and x["point"]["policy"] == "deepprune-oracle"]
    return f" (oracle-judge bound: {_acc(xs[0]['point']['accuracy'])})" if xs else ""


def markdown(r: dict) -> str:
    cols, rows = _cells(r)
    winners = []
    by = {}
    for x in r["table"]:  # the winners among methods one can run (the oracle judge is a bound)
        if x["point"] is not None and x["point"]["policy"] != "deepprune-oracle":
            cur = by.get(x["budget"])
            if cur is None or x["point"]["accuracy"] > cur["point"]["accuracy"] + 1e-12:
                by[x["budget"]] = x
    for b in r["budgets"]:
        x = by.get(b)
        if x is not None:
            d = _diff(x["vs_random"])
            winners.append(f"- within {100 * b:g}% of cons@N's tokens: **{x['family']}** "
                           f"({x['point']['settings']}), accuracy {_acc(x['point']['accuracy'], x['point']['accuracy_se'])}"
                           f" at {_pct(x['point']['token_share'])} of the tokens"
                           + (f"; against random pruning at the same budget {d}" if d else "")
                           + _bound(r, b))
    out = [f"### Frontier of run `{r['run']}`", "", header(r) + ".", "", *winners, "", _md_table(cols, rows), "",
           "Pareto front:", "", _md_table(FRONT_COLS, _front_rows(r)), ""]
    out += [f"- note: {n}" for n in r["notes"]]
    cmd = (f"dp frontier --run {r['run']}" + "".join(f" --truncate {x}" for x in r["rules"])
           + f" --orders {r['orders']} --seed {r['seed']}"
           + "".join(f" --judge {j}" for j in r["judges"]) + (f" --crossfit {r['crossfit']}" if r.get("crossfit") else ""))
    out += ["", f"Command: `{cmd}` ({len(r['points'])} points, {r['seconds']:.0f} s).", ""]
    return "\n".join(out)
