"""Turn batches of imported rows into problems and tokenized TraceRecords, run by run.

The table and MathArena importers read their files into `TraceRows` (plain columns,
one entry per trace); `ImportStream` takes those batches, assigns trace indices,
tokenizes the texts in bounded sub-batches with the run's tokenizer (token ids and
end offsets, log-probs missing) and yields `WriteBatch`es for the cache. It keeps
per run only small state (problem ids, indices, counts), so memory does not grow
with the text volume. When the file gives its own token counts, the re-tokenized
counts are compared (`token_check`); recorded columns (MathArena's `correct`) are
kept per trace for a later agreement check.

It does not read files and does not write the cache: the CLI hands its batches to
`dp.cache.ingest`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dp.errors import DPError
from dp.types import AnswerKind, FinishReason, Problem, TraceRecord

UNKNOWN_MODEL = "unknown"  # the model of a row whose model column is empty
TOKENIZE_CHARS = 2_000_000  # characters per tokenizer call (~0.5 M tokens): bounds memory


@dataclass
class TraceRows:
    """A batch of imported traces as columns; every list has one entry per trace."""

    source: str  # file (and line or row range) for error messages
    model: list[str | None]
    problem_id: list[str]
    question: list[str]
    gold: list[str | None]
    text: list[str]
    index: list[int | None]  # None: next free index of the problem
    answer: list[str | None] | None = None  # None: extract from the text
    kind: list[str | None] | None = None
    dataset: list[str | None] | None = None
    seed: list[int | None] | None = None
    finish: list[str | None] | None = None
    file_tokens: list[int | None] | None = None  # token counts the file gives
    recorded: dict[str, list] = field(default_factory=dict)  # kept as is (e.g. MathArena correct)
    sampling: list[str | None] | None = None  # JSON text of the sampling settings, if any


@dataclass
class WriteBatch:
    """Problems new to `run` and the tokenized traces that go with them."""

    run: str
    problems: list[Problem]
    records: list[TraceRecord]


@dataclass
class RunState:
    """What the stream knows about one run once the file has been read."""

    run: str
    model: str
    dataset: str
    problems: dict[str, int] = field(default_factory=dict)  # problem id -> traces
    used: set = field(default_factory=set)  # (problem id, index)
    tokens: int = 0
    sampling: str | None = None
    file_tokens: list = field(default_factory=list)  # (dp tokens, file tokens) pairs
    recorded: dict[str, dict] = field(default_factory=dict)  # name -> {(pid, idx): value}

    def token_check(self) -> dict | None:
        """How far the re-tokenized counts are from the file's own (None without them)."""
        if not self.file_tokens:
            return None
        pairs = np.asarray(self.file_tokens, dtype=np.float64)  # (n, 2): dp, file
        ok = pairs[:, 1] > 0
        rel = (pairs[ok, 0] - pairs[ok, 1]) / pairs[ok, 1]
        return {
            "traces_compared": int(pairs.shape[0]),
            "dp_tokens": int(pairs[:, 0].sum()), "file_tokens": int(pairs[:, 1].sum()),
            "ratio": float(pairs[:, 0].sum() / pairs[:, 1].sum()) if pairs[:, 1].sum() else None,
            "median_rel_diff": float(np.median(rel)) if rel.size else None,
            "mean_abs_rel_diff": float(np.abs(rel).mean()) if rel.size else None,
            "identical": int((pairs[:, 0] == pairs[:, 1]).sum()),
        }


def slug(name: str) -> str:
    """A model name as a run-name suffix: 'openai/o3 (high)' -> 'openai-o3-high'."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "model"


def run_names(run: str, models: list[str]) -> dict[str, str]:
    """Model name -> run name: `run` for one model, `run-<slug>` for each of several."""
    if len(models) <= 1:
        return {m: run for m in models}
    names = {m: f"{run}-{slug(m)}" for m in models}
    if len(set(names.values())) != len(names):
        raise DPError("two model names give the same run name; import them one at a time with --model")
    return names


class ImportStream:
    """Batches of `TraceRows` -> `WriteBatch`es, one run per model."""

    def __init__(self, tokenizer, runs: dict[str | None, str], dataset: str, default_model: str):
        self.tok = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.runs = runs  # model name (None: the only one) -> run name
        self.state = {r: RunState(r, m or default_model, dataset) for m, r in runs.items()}

    def _run_of(self, model: str | None) -> str | None:
        """The run of a row's model; None for a model not imported (see --model)."""
        if None in self.runs:
            return self.runs[None]
        return self.runs.get(UNKNOWN_MODEL if model is None else model)

    def batches(self, rows: Iterable[TraceRows]) -> Iterator[WriteBatch]:
        for chunk in rows:
            yield from self._chunk(chunk)

    def _chunk(self, c: TraceRows) -> Iterator[WriteBatch]:
        picked: dict[str, list[int]] = {}
        for i in range(len(c.text)):
            run = self._run_of(c.model[i])
            if run is not None:
                picked.setdefault(run, []).append(i)
        for run, rows in picked.items():
            st = self.state[run]
            new: list[Problem] = []
            metas = []
            for i in rows:
                pid = c.problem_id[i]
                if pid not in st.problems:
                    kind = (c.kind[i] if c.kind else None) or AnswerKind.EXPRESSION.value
                    if kind not in {k.value for k in AnswerKind}:
                        raise DPError(f"{c.source}: unknown answer kind '{kind}' (problem {pid})")
                    ds = (c.dataset[i] if c.dataset else None) or st.dataset
                    if not st.problems:
                        st.dataset = ds  # the run's dataset: its first problem's
                    new.append(Problem(ds, pid, c.question[i], c.gold[i], AnswerKind(kind)))
                    st.problems[pid] = 0
                idx = c.index[i]
                if idx is None:
                    idx = st.problems[pid]
                    while (pid, idx) in st.used:
                        idx += 1
                if (pid, idx) in st.used:
                    raise DPError(f"{c.source}: problem '{pid}' has trace index {idx} twice")
                st.used.add((pid, idx))
                st.problems[pid] += 1
                if st.sampling is None and c.sampling and c.sampling[i]:
                    st.sampling = c.sampling[i]
                for name, values in c.recorded.items():
                    st.recorded.setdefault(name, {})[(pid, idx)] = values[i]
                metas.append((i, pid, idx))
            first = True
            for part in _by_chars(metas, c.text):
                records = self._records(c, part)
                st.tokens += sum(r.n_tokens for r in records)
                if c.file_tokens:
                    st.file_tokens += [(r.n_tokens, c.file_tokens[i]) for (i, _, _), r in
                                       zip(part, records, strict=True) if c.file_tokens[i] is not None]
                yield WriteBatch(run, new if first else [], records)
                first = False

    def _records(self, c: TraceRows, part: list[tuple[int, str, int]]) -> list[TraceRecord]:
        texts = [c.text[i] for i, _, _ in part]
        ids, ends = self.encode(texts)
        out = []
        for (i, pid, idx), text, tid, end in zip(part, texts, ids, ends, strict=True):
            finish = (c.finish[i] if c.finish else None) or FinishReason.UNKNOWN.value
            if finish not in {f.value for f in FinishReason}:
                raise DPError(f"{c.source}: unknown finish reason '{finish}'")
            out.append(TraceRecord(
                problem_id=pid, index=int(idx), text=text, token_ids=tid, offsets=end,
                seed=None if not c.seed or c.seed[i] is None else int(c.seed[i]),
                finish_reason=FinishReason(finish),
                answer=None if c.answer is None else c.answer[i], answer_given=c.answer is not None,
            ))
        return out

    def encode(self, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Token ids (int32) and end offsets in characters (int32, non-decreasing, last = len)."""
        if self.backend is not None:
            encs = self.backend.encode_batch(texts, add_special_tokens=False)
            ids = [np.asarray(e.ids, dtype=np.int32) for e in encs]
            offs = [np.asarray(e.offsets, dtype=np.int32).reshape(-1, 2)[:, 1] for e in encs]
        else:
            enc = self.tok(texts, add_special_tokens=False, return_offsets_mapping=True)
            ids = [np.asarray(x, dtype=np.int32) for x in enc["input_ids"]]
            offs = [np.asarray(o, dtype=np.int32).reshape(-1, 2)[:, 1] for o in enc["offset_mapping"]]
        ends = []
        for text, off in zip(texts, offs, strict=True):
            off = np.maximum.accumulate(off) if off.size else off
            if off.size:
                off[-1] = len(text)  # trailing whitespace the tokenizer folded still belongs to the text
            ends.append(off)
        return ids, ends


def _by_chars(metas: list, texts: list[str]) -> Iterator[list]:
    """Split rows into parts of at most TOKENIZE_CHARS characters (at least one row each)."""
    part, size = [], 0
    for m in metas:
        n = len(texts[m[0]])
        if part and size + n > TOKENIZE_CHARS:
            yield part
            part, size = [], 0
        part.append(m)
        size += n
    if part:
        yield part
