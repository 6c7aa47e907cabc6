"""`dp import --format table`: any local table of traces, by a column mapping.

`--map problem_id=COL,question=COL,text=COL,gold=COL[,answer=COL,model=COL,index=COL]`
names the table's columns (extra optional keys: kind, dataset, seed, finish_reason,
n_tokens, sampling). Without `--map` the columns of `dp export` are used, so an
exported run reads back to the same run. A `text` column holding a list of
responses per row (one row per problem, as in OpenR1-Math) is exploded into one
trace per entry; `answer` and `n_tokens` may then be lists of the same length.

The mapping is checked against the table's schema before any row is read: a
missing column or a column of the wrong type is a one-line `DPError` naming the
column and the file. Reading is in batches (`dp.generate.importers.table_source`). Nothing
here tokenizes or writes the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from dp.errors import DPError
from dp.generate.importers.stream import UNKNOWN_MODEL, TraceRows
from dp.generate.importers.table_source import TableSource

REQUIRED = ("problem_id", "question", "text", "gold")
OPTIONAL = ("answer", "model", "index", "kind", "dataset", "seed", "finish_reason", "n_tokens",
            "sampling")
KEYS = REQUIRED + OPTIONAL
LISTABLE = ("text", "answer", "n_tokens")  # may hold one entry per trace of a one-row problem

_str = (pa.types.is_string, pa.types.is_large_string)
_int = (pa.types.is_integer,)
_null = (pa.types.is_null,)
_TYPES = {  # key -> accepted Arrow type tests, and their name for the error message
    "problem_id": (_str + _int, "string or integer"),
    "question": (_str, "string"),
    "text": (_str, "string or list of strings"),
    "gold": (_str + _int + (pa.types.is_floating,) + _null, "string or number"),
    "answer": (_str + _null, "string or list of strings"),
    "model": (_str, "string"), "kind": (_str, "string"), "dataset": (_str, "string"),
    "finish_reason": (_str, "string"), "sampling": (_str, "string"),
    "index": (_int, "integer"), "seed": (_int + _null, "integer"),
    "n_tokens": (_int + _null, "integer or list of integers"),
}


@dataclass(frozen=True)
class ColumnMap:
    """dp field -> table column, for the keys the user named (or the `dp export` columns)."""

    columns: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, spec: str | None, schema: pa.Schema) -> ColumnMap:
        """From `--map k=COL,...`; None: the `dp export` column names present in `schema`."""
        if spec is None:
            return cls(tuple((k, k) for k in KEYS if k in schema.names))
        pairs = []
        for item in spec.split(","):
            if not item.strip():
                continue
            key, sep, col = item.partition("=")
            key, col = key.strip(), col.strip()
            if not sep or not col:
                raise DPError(f"--map: '{item}' is not KEY=COLUMN")
            if key not in KEYS:
                raise DPError(f"--map: unknown key '{key}' (keys: {', '.join(KEYS)})")
            if key in dict(pairs):
                raise DPError(f"--map: key '{key}' given twice")
            pairs.append((key, col))
        return cls(tuple(pairs))

    def get(self, key: str) -> str | None:
        return dict(self.columns).get(key)

    def as_dict(self) -> dict[str, str]:
        return dict(self.columns)


def check_map(cmap: ColumnMap, source: TableSource) -> bool:
    """Raise DPError for a missing key or column, or a wrong type; True when `text` is a list."""
    where = source.path
    for key in REQUIRED:
        if cmap.get(key) is None:
            raise DPError(f"{where}: --map needs {key}=COLUMN (columns: {', '.join(source.schema.names)})")
    listed = False
    for key, col in cmap.columns:
        if col not in source.schema.names:
            raise DPError(f"{where}: no column '{col}' (mapped from {key}=); "
                          f"columns: {', '.join(source.schema.names)}")
        typ = source.schema.field(col).type
        tests, name = _TYPES[key]
        if key in LISTABLE and (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
            if key == "text":
                listed = True
            typ = typ.value_type
        if source.kind == "csv" and key in ("index", "seed", "n_tokens") and _str[0](typ):
            continue  # a CSV column guessed as text is parsed row by row
        if not any(t(typ) for t in tests):
            raise DPError(f"{where}: column '{col}' ({key}=) has type {source.schema.field(col).type}, "
                          f"expected {name}")
    if listed and cmap.get("index"):
        raise DPError(f"{where}: index= cannot be used with the list column '{cmap.get('text')}' "
                      "(the position in the list is the index)")
    for key in ("answer", "n_tokens"):
        col = cmap.get(key)
        if col is not None:
            is_list = pa.types.is_list(source.schema.field(col).type)
            if is_list != listed and not pa.types.is_null(source.schema.field(col).type):
                raise DPError(f"{where}: column '{col}' ({key}=) must be a list exactly when "
                              f"the text column '{cmap.get('text')}' is")
    return listed


def models(cmap: ColumnMap, source: TableSource) -> list[str]:
    """The distinct model names, in order of first appearance (reads only that column)."""
    col = cmap.get("model")
    if col is None:
        return []
    seen: dict[str, None] = {}
    for b in source.batches([col], 65536, strings=[col]):
        for m in b.column(0).to_pylist():
            seen.setdefault(UNKNOWN_MODEL if m is None else str(m), None)
    return list(seen)


def read_rows(cmap: ColumnMap, source: TableSource, batch_rows: int = 256) -> Iterator[TraceRows]:
    """The table as `TraceRows` batches, list columns exploded."""
    listed = check_map(cmap, source)
    cols = [c for _, c in cmap.columns]
    keep_text = tuple(cmap.get(k) for k in ("problem_id", "question", "gold", "text", "answer", "model")
                      if cmap.get(k))
    start = 0
    for batch in source.batches(cols, batch_rows, strings=keep_text if source.kind == "csv" else ()):
        data = {k: batch.column(cmap.get(k)).to_pylist() for k, _ in cmap.columns}
        n = batch.num_rows
        where = f"{source.path} (rows {start}-{start + n - 1})"
        start += n
        if listed:
            data = _explode(data, where)
        yield _rows(data, where)


def _explode(data: dict[str, list], where: str) -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in data}
    for r, texts in enumerate(data["text"]):
        texts = texts or []
        for key in ("answer", "n_tokens"):
            vals = data.get(key)
            if vals is not None and vals[r] is not None and len(vals[r]) != len(texts):
                raise DPError(f"{where}: row {r}: '{key}' has {len(vals[r])} entries, text {len(texts)}")
        for j, text in enumerate(texts):
            for k, vals in data.items():
                v = vals[r]
                out[k].append(text if k == "text" else (None if v is None else v[j])
                              if k in LISTABLE else v)
    return out


def _int_or_none(v, key: str, where: str) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise DPError(f"{where}: '{key}' value {v!r} is not an integer") from None


def gold_text(v) -> str | None:
    """A gold answer as text: 7 and 7.0 -> '7'; None stays None."""
    if v is None:
        return None
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _rows(d: dict[str, list], where: str) -> TraceRows:
    n = len(d["text"])
    for r, t in enumerate(d["text"]):
        if t is None:
            raise DPError(f"{where}: row {r}: the text is missing")
    for key in ("question", "problem_id"):
        for r, v in enumerate(d[key]):
            if v is None:
                raise DPError(f"{where}: row {r}: the {key} is missing")

    def ints(key):
        return [_int_or_none(v, key, where) for v in d[key]] if key in d else None

    return TraceRows(
        source=where,
        model=[None if m is None else str(m) for m in d["model"]] if "model" in d else [None] * n,
        problem_id=[str(p) for p in d["problem_id"]],
        question=d["question"], gold=[gold_text(g) for g in d["gold"]], text=d["text"],
        index=ints("index") or [None] * n, answer=d.get("answer"),
        kind=d.get("kind"), dataset=d.get("dataset"), seed=ints("seed"),
        finish=d.get("finish_reason"), file_tokens=ints("n_tokens"), sampling=d.get("sampling"),
    )
