"""Sampling traces: prompts, sampling settings, engines (vLLM, transformers), the run driver.

Data flows one way: `dp.generate` turns problems into `dp.types.TraceRecord`s and
hands each finished batch to a `sink` callback; it never imports `dp.cache` (the
CLI wires a cache writer in as the sink). Modules: `sampling` (SamplingSpec, the
one conversion to vLLM), `prompts` (chat-templated one-shot prompts), `records`
(raw per-token engine output -> TraceRecord, shared by every engine), `engines`
(the Engine protocol, VLLMEngine, TransformersEngine, make_engine), `runner`
(generate_run: jobs, seeds, shards, batches, resume via `done`), `distributed`
(the same on R engine replicas as Ray actors; the optional `ray` extra), `stream` (vLLM's
AsyncLLM streaming per-trace deltas, for `dp live` and `dp serve`), `replay_engine` (a
trace-driven stand-in for a GPU engine's pace: a cached run streamed back in vLLM's own output
classes), `watchdog` (no engine outlives dp), and `importers/` (traces sampled elsewhere,
text only, turned into TraceRecords; the cache writes them).
"""
