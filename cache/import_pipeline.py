"""The streaming import of a table (`--format table`) or MathArena outputs (`--format matharena`).

Wires the layers: `dp.generate.importers.table_source` reads the file in batches, the
format module maps rows to `TraceRows`, `dp.generate.importers.stream` tokenizes them,
`dp.cache.ingest` writes them (complete runs or nothing). Validation that needs no rows
(the path, the mapping, column types, the model name, the tokenizer) happens
before the cache is opened. One run per model name. Returns per run the
`dp cache info` record plus what the import measured: seconds, tokens/s, the
token-count check against the file's own counts, and for MathArena how often
dp's grading agrees with theirs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dp.errors import DPError

TABLE_FORMATS = ("table", "matharena")


def import_table_file(path: str | Path, run: str, cache_path: str | Path, fmt: str,
                      tokenizer: str, column_map: str | None = None, model: str | None = None,
                      replace: bool = False, batch_rows: int = 256, atomic: bool = False) -> list[dict]:
    """Import `path` into `cache_path`; returns one summary per run written."""
    from dp.cache.info import run_stats
    from dp.cache.ingest import grading_agreement, write_import
    from dp.cache.store import Cache, RunInfo
    from dp.generate.importers import matharena as import_matharena
    from dp.generate.importers import table as import_table
    from dp.generate.importers.stream import ImportStream, run_names
    from dp.generate.importers.table_source import open_table
    from dp.models import load_tokenizer

    t0 = time.perf_counter()
    source = open_table(path)
    if fmt == "matharena":
        import_matharena.check_schema(source)
        cmap = import_table.ColumnMap((("model", import_matharena.MODEL),))
        mapping = None
    elif fmt == "table":
        cmap = import_table.ColumnMap.parse(column_map, source.schema)
        import_table.check_map(cmap, source)
        mapping = cmap.as_dict()
    else:
        raise DPError(f"unknown table format '{fmt}' (known: {', '.join(TABLE_FORMATS)})")
    names = import_table.models(cmap, source)
    if model is not None and cmap.get("model") is not None:
        if model not in names:
            raise DPError(f"{path}: no model '{model}' (models: {', '.join(names) or 'none'})")
        runs = {model: run}
    elif names:
        runs = run_names(run, names)
    else:
        runs = {None: run}
    tok = load_tokenizer(tokenizer)
    folder = source.path.parent if source.path.name == "data" else source.path  # a hub repo's data/
    dataset = source.path.stem if source.path.is_file() else folder.name
    stream = ImportStream(tok, runs, dataset, default_model=model or "unknown")

    def rows():
        n = 0
        it = (import_matharena.read_rows(source, batch_rows) if fmt == "matharena"
              else import_table.read_rows(cmap, source, batch_rows))
        for chunk in it:
            n += len(chunk.text)
            yield chunk
        if n == 0:
            raise DPError(f"{path}: empty table (no rows)")

    def infos():
        out = []
        for st in stream.state.values():
            settings = {"file": str(path), "format": fmt, "map": mapping,
                        "token_check": st.token_check()}
            if st.recorded:
                settings["recorded"] = {k: [[p, i, v] for (p, i), v in vals.items()]
                                        for k, vals in st.recorded.items()}
            out.append(RunInfo(
                run=st.run, model=st.model, engine="import", tokenizer=tokenizer,
                source=f"import:{fmt}", dataset=st.dataset, n=max(st.problems.values(), default=0),
                sampling=json.loads(st.sampling) if st.sampling else {}, settings=settings,
            ))
        return out

    def after(cache: Cache):
        for st in stream.state.values():
            if "correct" in st.recorded:
                info = cache.run_info(st.run)
                info["settings"]["grading_agreement"] = grading_agreement(cache, st.run, st.recorded["correct"])
                cache.update_run_settings(st.run, info["settings"])

    batches = ((b.run, b.problems, b.records) for b in stream.batches(rows()))
    write_import(cache_path, list(runs.values()), batches, infos, replace=replace, after=after,
                 atomic=atomic)
    seconds = time.perf_counter() - t0
    total = sum(st.tokens for st in stream.state.values())
    out = []
    with Cache(cache_path) as cache:
        for st in stream.state.values():
            stats = run_stats(cache, st.run)
            settings = cache.run_info(st.run)["settings"]
            stats.update({  # seconds and tokens/s: the whole import (all runs), tokenizing included
                "seconds": seconds, "tokens_per_s": total / seconds if seconds else None,
                "token_check": settings.get("token_check"),
                "grading_agreement": settings.get("grading_agreement"),
            })
            out.append(stats)
    return out
