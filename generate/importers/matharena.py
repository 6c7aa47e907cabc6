"""`dp import --format matharena`: MathArena's published model-output tables.

One row per sampled answer, columns as on their dataset cards: `problem_idx`,
`problem`, `model_name`, `model_config`, `idx_answer`, `user_message`, `answer`
(the final response), `input_tokens`, `output_tokens`, `gold_answer`, and in most
tables `parsed_answer` and `correct` (their own grading); newer tables add
`all_messages` - a list of {role, content, type} (or the same list as JSON text)
whose assistant messages of type `cot` hold the reasoning - and `history`.

The trace text is the reasoning followed by the answer where both exist. dp
extracts and grades its own answer from that text; `parsed_answer` and `correct`
are kept as recorded columns, and `output_tokens` is compared with dp's token
count. One run per `model_name`. Nothing here tokenizes or writes the cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from dp.errors import DPError
from dp.generate.importers.stream import TraceRows
from dp.generate.importers.table import gold_text
from dp.generate.importers.table_source import TableSource

REQUIRED = ("problem_idx", "problem", "model_name", "idx_answer", "answer", "gold_answer")
OPTIONAL = ("all_messages", "parsed_answer", "correct", "output_tokens", "model_config")
RECORDED = ("parsed_answer", "correct")
MODEL = "model_name"


def check_schema(source: TableSource) -> list[str]:
    """Raise DPError for a missing or mistyped column; the columns to read."""
    schema = source.schema
    for col in REQUIRED:
        if col not in schema.names:
            raise DPError(f"{source.path}: not a MathArena output table: no column '{col}'")
    expect = {
        "problem": pa.types.is_string, "model_name": pa.types.is_string, "answer": pa.types.is_string,
        "idx_answer": pa.types.is_integer, "output_tokens": pa.types.is_integer,
        "correct": pa.types.is_boolean, "parsed_answer": lambda t: pa.types.is_string(t) or pa.types.is_null(t),
        "problem_idx": lambda t: pa.types.is_string(t) or pa.types.is_integer(t),
        "all_messages": lambda t: pa.types.is_string(t) or pa.types.is_list(t),
    }
    cols = [c for c in REQUIRED + OPTIONAL if c in schema.names]
    for col in cols:
        test = expect.get(col)
        if test is not None and not (test(schema.field(col).type) or pa.types.is_large_string(schema.field(col).type)):
            raise DPError(f"{source.path}: column '{col}' has type {schema.field(col).type}, "
                          "not the one of MathArena's tables")
    return cols


def problem_id(idx) -> str:
    """MathArena's problem index as a sortable id: 7 -> '007'; other text stays as is."""
    s = str(idx).strip()
    return f"{int(s):03d}" if s.isdigit() else s


def reasoning(messages) -> str:
    """The reasoning in `all_messages`: the assistant messages of type `cot`, joined."""
    if messages is None:
        return ""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages) if messages.strip() else []
        except json.JSONDecodeError:
            return ""
    parts = [m.get("content") or "" for m in messages or []
             if isinstance(m, dict) and m.get("role") == "assistant" and m.get("type") == "cot"]
    return "\n\n".join(p for p in parts if p)


def trace_text(messages, answer: str | None) -> str:
    """Reasoning and answer, separated by a blank line where both exist."""
    return "\n\n".join(p for p in (reasoning(messages), answer or "") if p)


def read_rows(source: TableSource, batch_rows: int = 256) -> Iterator[TraceRows]:
    cols = check_schema(source)
    start = 0
    for batch in source.batches(cols, batch_rows):
        d = {c: batch.column(c).to_pylist() for c in cols}
        n = batch.num_rows
        where = f"{source.path} (rows {start}-{start + n - 1})"
        start += n
        msgs = d.get("all_messages", [None] * n)
        yield TraceRows(
            source=where, model=d["model_name"], problem_id=[problem_id(p) for p in d["problem_idx"]],
            question=d["problem"], gold=[gold_text(g) for g in d["gold_answer"]],
            text=[trace_text(m, a) for m, a in zip(msgs, d["answer"], strict=True)],
            index=d["idx_answer"], file_tokens=d.get("output_tokens"),
            recorded={c: d[c] for c in RECORDED if c in d},
            sampling=[json.dumps({"model_config": c}) if c else None
                      for c in d.get("model_config", [None] * n)],
        )
