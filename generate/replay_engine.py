"""The trace-driven engine: a stand-in for a GPU's pace, replaying the traces of a cached run.

`ReplayAsyncLLM` stands in for vLLM's `AsyncLLM` and ONLY for the pace of a GPU
engine, which cannot run here: it streams the cached traces of one run back in
vLLM's own output classes (`RequestOutput`, `CompletionOutput`, `FlatLogprobs`),
one token per running request per engine step, through vLLM's own
`RequestOutputCollector`, so a consumer that falls behind gets merged deltas
exactly as from the real engine, and an `abort` ends a request with a final
`finish_reason="abort"` output as the real one does. Steps run as fast as the
consumers take them (`rate=None`) or at `rate` tokens per second.
`ReplayStreamEngine` is `dp.generate.stream.StreamEngine` with this stand-in
in place of `AsyncLLM`: everything `dp` does with the outputs is the real code.

What it does not do: sample. A request is matched to a cached trace by its
prompt (the problem's prompt, as `dp live` / `dp serve` build it) and its seed
(the trace's stored seed); requests with unknown seeds (`dp serve`) take the
problem's traces in turn (k-th such request -> trace k mod N). A resumed request
(prompt = problem prompt + a prefix of a trace) continues that cached trace. A
trace cut in the cache (finish `abort`: a live run stopped it) streams its tokens
and then waits for its abort; any other trace ends with its cached finish reason
(an imported trace's `unknown` too, which `dp` reads back as unknown). Per-token log-probs are the cached ones (rounded to 1e-3);
the k top-k log-probs of a position are all -confidence (the cached value), so
`token_confidence` gives back exactly the cached confidence; the top-k ids are
placeholders distinct from the sampled token. Completion text is left empty
(dp decodes token ids itself). Nothing here is a model, and nothing here is
the real engine's speed: it is named a stand-in everywhere it is used.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from dp.errors import DPError
from dp.seeds import derive

STANDIN = "replay (trace-driven stand-in for a GPU engine's pace; not a model)"


def replay_seed(problem_id: str, index: int) -> int:
    """The seed given to a trace whose cached seed is unknown (imported runs), so requests still name it."""
    return derive("replay", problem_id, index)


@dataclass
class _Trace:
    """One request being replayed: the cached arrays and where it stands."""

    request_id: str
    ids: np.ndarray  # (n,) token ids, as the cache gives them
    lp: np.ndarray  # (n,) float32 sampled log-probs
    conf: np.ndarray  # (n,) float32 confidences (NaN unknown)
    pos: int  # next position to emit
    end: int  # emit up to here
    finish: str | None  # finish reason at `end`; None = wait for the abort
    collector: object
    k: int


class ReplaySource:
    """The cached traces of one run, found by prompt and seed; a few problems' arrays held at once."""

    def __init__(self, cache, run: str, tokenizer, hold: int = 8):
        from dp.generate.prompts import build_prompt

        self.cache, self.run = cache, run
        self.problems = cache.load_run(run)
        if not self.problems:
            raise DPError(f"run '{run}' has no traces to replay")
        self.vocab = len(tokenizer)
        self.by_prompt: dict[tuple, int] = {}
        self.seeds: list[dict[int, int]] = []
        for p, pt in enumerate(self.problems):
            ids = tokenizer(build_prompt(tokenizer, pt.problem), add_special_tokens=False)["input_ids"]
            self.by_prompt[tuple(ids)] = p
            seeds = [int(s) if s >= 0 else replay_seed(pt.problem.problem_id, int(i))
                     for s, i in zip(pt.seeds, pt.index, strict=True)]
            self.seeds.append({s: t for t, s in enumerate(seeds)})
        self.prompt_lens = sorted({len(k) for k in self.by_prompt}, reverse=True)
        self._turn: dict[int, int] = defaultdict(int)
        self._held: OrderedDict[int, tuple] = OrderedDict()
        self.hold = hold

    def trace_seeds(self, p: int) -> list[int]:
        inv = {t: s for s, t in self.seeds[p].items()}
        return [inv[t] for t in range(len(inv))]

    def arrays(self, p: int) -> tuple[list, list, list]:
        if p in self._held:
            self._held.move_to_end(p)
            return self._held[p]
        tids = self.problems[p].trace_ids
        got = tuple(self.cache.token_arrays(tids, c) for c in ("token_id", "logprob", "confidence"))
        self._held[p] = got
        while len(self._held) > self.hold:
            self._held.popitem(last=False)
        return got

    def find(self, prompt_ids: list[int], seed: int | None) -> tuple[int, int, int]:
        """(problem, trace, first position to emit) for a request."""
        for n in self.prompt_lens:
            p = self.by_prompt.get(tuple(prompt_ids[:n]))
            if p is not None:
                break
        else:
            raise DPError(f"replay engine: no problem of run '{self.run}' has this prompt")
        rest = prompt_ids[n:]
        t = self.seeds[p].get(seed) if seed is not None else None
        if rest:  # a resumed trace: the cached trace that starts with what it has
            ids = self.arrays(p)[0]
            hits = [i for i, a in enumerate(ids) if a.size >= len(rest) and np.array_equal(a[: len(rest)], rest)]
            if not hits:
                raise DPError(f"replay engine: no cached trace of {self.problems[p].problem.problem_id} continues "
                              "this prefix")
            t = t if t in hits else hits[0]
        elif t is None:
            t = self._turn[p] % self.problems[p].n
            self._turn[p] += 1
        return p, t, len(rest)


class ReplayAsyncLLM:
    """Stands in for `vllm.v1.engine.async_llm.AsyncLLM` (generate / abort / shutdown) at any pace."""

    def __init__(self, source: ReplaySource, rate: float | None = None, max_num_seqs: int | None = None):
        if rate is not None and not rate > 0:
            raise DPError(f"replay rate must be > 0 tokens/s, got {rate}")
        self.source, self.rate, self.max_num_seqs = source, rate, max_num_seqs
        self.running: OrderedDict[str, _Trace] = OrderedDict()
        self.waiting: OrderedDict[str, _Trace] = OrderedDict()
        self.held: dict[str, _Trace] = {}  # streamed all they have; wait for an abort
        self._work = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.steps = self.tokens = 0
        self.busy_s = 0.0  # CPU seconds spent making outputs (the stand-in's own cost, not dp's)

    async def generate(self, prompt, params, request_id: str) -> AsyncIterator:
        from vllm.v1.engine.output_processor import RequestOutputCollector

        p, t, start = self.source.find(list(prompt["prompt_token_ids"]), params.seed)
        ids, lp, conf = (a[t] for a in self.source.arrays(p))
        cached = str(self.source.problems[p].finish[t])
        end = ids.size
        finish = None if cached == "abort" else cached  # an imported trace's "unknown" end is still its end
        if params.max_tokens is not None and start + params.max_tokens < end:
            end, finish = start + params.max_tokens, "length"
        q = RequestOutputCollector(params.output_kind, request_id)
        tr = _Trace(request_id, ids, lp, conf, start, end, finish, q, int(params.logprobs or 0))  # no copies
        (self.running if self.max_num_seqs is None or len(self.running) < self.max_num_seqs
         else self.waiting)[request_id] = tr
        self._ensure_task()
        self._work.set()
        finished = False
        try:
            while not finished:
                out = q.get_nowait() or await q.get()
                finished = out.finished
                yield out
        finally:
            if not finished:  # the consumer went away: like AsyncLLM, abort the request
                self._drop(request_id)

    async def abort(self, request_id: str) -> None:
        tr = self._drop(request_id)
        if tr is not None:
            tr.collector.put(self._output(tr, tr.pos, tr.pos, "abort"))

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _drop(self, request_id: str) -> _Trace | None:
        tr = None
        for d in (self.running, self.waiting, self.held):
            tr = d.pop(request_id, None) or tr
        self._admit()
        return tr

    def _admit(self) -> None:
        while self.waiting and (self.max_num_seqs is None or len(self.running) < self.max_num_seqs):
            rid, tr = self.waiting.popitem(last=False)
            self.running[rid] = tr

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._steps())

    async def _steps(self) -> None:
        """One token for every running request per step, like a decoding batch; then let consumers run."""
        due = time.perf_counter()
        while True:
            if not self.running:
                self._work.clear()
                await self._work.wait()
                due = time.perf_counter()
                continue
            emitted, c0 = 0, time.process_time()
            for rid, tr in list(self.running.items()):
                a = tr.pos
                tr.pos += 1
                emitted += 1
                done = tr.pos >= tr.end
                tr.collector.put(self._output(tr, a, tr.pos, tr.finish if done else None))
                if done:
                    del self.running[rid]
                    if tr.finish is None:
                        self.held[rid] = tr
            self._admit()
            self.busy_s += time.process_time() - c0
            self.steps += 1
            self.tokens += emitted
            if self.rate is None:
                await asyncio.sleep(0)
            else:
                due += emitted / self.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))

    def _output(self, tr: _Trace, a: int, b: int, finish: str | None):
        """The RequestOutput delta of positions a..b (the sampled token, then k top-k entries each)."""
        from vllm.logprobs import FlatLogprobs
        from vllm.outputs import CompletionOutput, RequestOutput

        ids = tr.ids[a:b].astype(np.int64)
        flat = None
        if tr.k:
            k1, m = tr.k + 1, b - a
            tid = np.empty((m, k1), dtype=np.int64)
            tid[:, 0] = ids
            tid[:, 1:] = (ids[:, None] + np.arange(1, k1)) % self.source.vocab  # placeholders, never the sampled id
            lps = np.empty((m, k1), dtype=np.float64)
            lps[:, 0] = tr.lp[a:b].astype(np.float32)
            lps[:, 1:] = (-tr.conf[a:b].astype(np.float32))[:, None]
            lps[:, 1:][~np.isfinite(lps[:, 1:])] = -np.inf
            ranks = np.tile(np.arange(k1), (m, 1))
            ranks[:, 0] = k1
            flat = FlatLogprobs(start_indices=list(range(0, m * k1, k1)), end_indices=list(range(k1, m * k1 + 1, k1)),
                                token_ids=tid.ravel().tolist(), logprobs=lps.ravel().tolist(),
                                ranks=ranks.ravel().tolist(), decoded_tokens=[None] * (m * k1))
        comp = CompletionOutput(index=0, text="", token_ids=ids.tolist(), cumulative_logprob=None, logprobs=flat,
                                finish_reason=finish, stop_reason=None)
        return RequestOutput(request_id=tr.request_id, prompt=None, prompt_token_ids=None, prompt_logprobs=None,
                             outputs=[comp], finished=finish is not None)


def replay_stream_engine(cache, run: str, model: str | None = None, rate: float | None = None,
                         max_num_seqs: int | None = None):
    """A `StreamEngine` whose AsyncLLM is the trace-driven stand-in over `run` of `cache`."""
    from dp.generate.stream import StreamEngine, freeze_startup_heap, thaw_startup_heap

    info = cache.run_info(run)

    class ReplayStreamEngine(StreamEngine):
        def __init__(self):
            # the tokenizer only (no AsyncLLM): the one the run was tokenized with (an imported run's model
            # may be nowhere here, its token ids come from the tokenizer named at import)
            super(StreamEngine, self).__init__(model or info.get("tokenizer") or info["model"])
            import vllm.inputs  # noqa: F401 - vLLM's output classes imported now, not inside the first timed delta
            import vllm.v1.engine.output_processor  # noqa: F401
            self.name = STANDIN
            self.engine = ReplayAsyncLLM(ReplaySource(cache, run, self.tokenizer), rate, max_num_seqs)
            self._settings = {"replay_of": run, "rate_tok_s": rate, "max_num_seqs": max_num_seqs}
            freeze_startup_heap()

        def close(self) -> None:
            engine = self.__dict__.pop("engine", None)
            if engine is not None:
                engine.shutdown()
                thaw_startup_heap()

    return ReplayStreamEngine()
