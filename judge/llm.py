"""The `llm` judge: a causal LM asked whether two truncated traces reach the same final answer.

As in the paper (whose judge is Qwen3-4B-Instruct): one chat-template prompt holds
both prefixes and the question `QUESTION`; the score is P(yes) / (P(yes) + P(no))
from the logits of the first answer token, where P(yes) sums the `LABEL_WORDS`
spellings ("yes", "Yes"), and likewise for "no". Equivalently score = sigmoid(z),
z = logsumexp(yes logits) - logsumexp(no logits): the one logit that
`dp.judge.losses.focal_loss` trains (cross-entropy over the two label words, or focal
loss), with the "different" class oversampled in the pairs. Only the final hidden state
of each prompt meets the output embedding, and only at the label-token rows.

- Zero-shot: `load_judge("llm")` = SmolLM2-135M-Instruct (`smollm2-135m`); another model
  through a directory whose judge.json is {"type": "llm", "settings": {"model": PATH}}.
- Fine-tuned: `dp judge train --judge llm [--set model=PATH]` (`dp.judge.llm_train`: all
  weights, the top layers or LoRA; validated, early-stopped, resumable); bf16 on cuda when
  present, fp32 on the CPU. The same code trains Qwen3-4B-Instruct-2507 on a GPU
  (`--set model=DIR --set gradient_checkpointing=true`).
- Scores are averaged over both orders of the pair (`symmetric`), which doubles the
  cost. Each trace is cut to `max_trace_tokens` model tokens (`keep`: which end stays).
- The judge's own compute is recorded: `last_prompt_tokens` (per pair, last call) and
  `cost()` (totals).

Nothing is downloaded (local directories and `dp.models` aliases only). Models with
final-logit soft-capping (Gemma 2) are not handled. It does not cache scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.judge.base import Prefix, distinct_texts, open_judge_dir, write_judge_file
from dp.judge.losses import LoopSettings, hf_quiet, settings_from, torch_device
from dp.models import DEFAULT_MODEL, resolve_model

QUESTION = "Will these two reasoning traces reach the same final answer? Answer yes or no."
PROMPT = ("Below are two partial reasoning traces written for the same question. Both are cut off "
          "before their end.\n\nTrace A:\n{a}\n\nTrace B:\n{b}\n\n" + QUESTION)
LABEL_WORDS: dict[int, tuple[str, ...]] = {1: ("yes", "Yes"), 0: ("no", "No")}  # label -> spellings


@dataclasses.dataclass(frozen=True)
class LLMSettings(LoopSettings):
    """The LLM judge's settings: the training loop's plus the model and the prompt's inputs."""

    batch_size: int = 8  # pairs per training step
    lr: float = 2e-5  # AdamW peak learning rate
    model: str = DEFAULT_MODEL  # dp.models alias or local HF directory (e.g. Qwen3-4B-Instruct-2507)
    max_trace_tokens: int = 512  # model tokens kept of each prefix (>= 1)
    keep: str = "end"  # which end of a longer prefix stays: "end" (by the decision point) or "start"
    symmetric: bool = True  # average the scores of (a, b) and (b, a)
    dtype: str | None = None  # torch dtype name; None = bfloat16 on cuda, float32 elsewhere
    gradient_checkpointing: bool = False  # trade compute for memory when training big models
    score_batch_size: int = 8  # prompts per forward pass when scoring

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_trace_tokens, int) or self.max_trace_tokens < 1:
            raise DPError(f"max_trace_tokens must be an integer >= 1, got {self.max_trace_tokens!r}")
        if self.keep not in ("end", "start"):
            raise DPError(f"keep must be 'end' or 'start', got {self.keep!r}")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise DPError(f"dtype must be float32, bfloat16, float16 or null, got {self.dtype!r}")
        if not isinstance(self.score_batch_size, int) or self.score_batch_size < 1:
            raise DPError(f"score_batch_size must be an integer >= 1, got {self.score_batch_size!r}")


def _digest(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=4).hexdigest()


def load_lm(path: Path, s: LLMSettings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch_device(s.device)
    dtype = getattr(torch, s.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    try:
        with hf_quiet():
            tok = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except OSError as e:
        raise DPError(f"cannot load a causal LM from {path}: {e}") from None
    if not getattr(tok, "chat_template", None):
        raise DPError(f"the tokenizer in {path} has no chat template; the llm judge needs an instruct model")
    return model.to(device).eval(), tok


class LLMJudge:
    """sigmoid(logsumexp(yes logits) - logsumexp(no logits)) after the judge prompt."""

    cacheable = True

    def __init__(self, model, tokenizer, settings: LLMSettings, meta: dict | None = None,
                 weights: str | None = None):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.meta = dict(meta or {})
        self.weights = weights  # "." when the directory holds fine-tuned weights, else None
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.label_ids: dict[int, list[int]] = {}
        for label, words in LABEL_WORDS.items():
            ids = [tokenizer.encode(w, add_special_tokens=False) for w in words]
            if any(len(i) != 1 for i in ids):
                raise DPError(f"label words {words} are not single tokens for this tokenizer: {ids}")
            self.label_ids[label] = sorted({i[0] for i in ids})
        self.name = self.compute_name()
        self.last_prompt_tokens = np.zeros(0, dtype=np.int64)  # (n_pairs,) prompt tokens per pair, last call
        self.prompt_tokens_total = 0  # prompt tokens since creation (both orders when symmetric)
        self.pairs_total = 0

    def compute_name(self) -> str:
        s = self.settings
        scoring = {"model": s.model, "prompt": PROMPT, "labels": LABEL_WORDS, "max_trace_tokens": s.max_trace_tokens,
                   "keep": s.keep, "symmetric": s.symmetric, "dtype": str(self.dtype).removeprefix("torch.")}
        if self.weights is None:
            return f"llm:{Path(s.model).name}:{_digest(scoring)}"
        trained = {k: self.meta.get(k) for k in ("created_at", "git_hash", "training", "seed")}
        return f"llm:ft-{Path(s.model).name}:{_digest({**scoring, **trained})}"

    # ------------------------------------------------------------ inputs
    def cut(self, texts: Sequence[str]) -> list[str]:
        """Each text cut to at most `max_trace_tokens` model tokens (the `keep` end)."""
        if not texts:
            return []
        k, out = self.settings.max_trace_tokens, []
        for text, ids in zip(texts, self.tokenizer(list(texts), add_special_tokens=False)["input_ids"],
                             strict=True):
            if len(ids) <= k:
                out.append(text)
            else:
                out.append(self.tokenizer.decode(ids[-k:] if self.settings.keep == "end" else ids[:k]))
        return out

    def prompt_ids(self, a: str, b: str) -> list[int]:
        """Token ids of the chat prompt for traces a, b, ending where the answer starts."""
        messages = [{"role": "user", "content": PROMPT.format(a=a, b=b)}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def logits(self, prompts: Sequence[list[int]]):
        """(len(prompts),) tensor z = log P(yes) - log P(no) at each prompt's end (grad when enabled)."""
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        lengths = torch.tensor([len(p) for p in prompts])
        ids = torch.full((len(prompts), int(lengths.max())), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # right padding: positions stay as in an unpadded prompt
            ids[i, :len(p)] = torch.tensor(p)
            mask[i, :len(p)] = 1
        hidden = self.model.base_model(input_ids=ids.to(self.device),
                                       attention_mask=mask.to(self.device)).last_hidden_state
        last = hidden[torch.arange(len(prompts), device=self.device), (lengths - 1).to(self.device)]
        head = self.model.get_output_embeddings()
        yes, no = self.label_ids[1], self.label_ids[0]
        w = head.weight[yes + no]
        z = last @ w.T
        if getattr(head, "bias", None) is not None:
            z = z + head.bias[yes + no]
        z = z.float()
        return torch.logsumexp(z[:, :len(yes)], dim=1) - torch.logsumexp(z[:, len(yes):], dim=1)

    # ----------------------------------------------------------- scoring
    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        import torch

        n = len(left)
        texts, ia, ib = distinct_texts(left, right)
        cut = self.cut(texts)
        jobs = [(cut[a], cut[b]) for a, b in zip(ia.tolist(), ib.tolist(), strict=True)]
        if self.settings.symmetric:
            jobs += [(b, a) for a, b in jobs]
        prompts = [self.prompt_ids(a, b) for a, b in jobs]
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        z = np.empty(len(prompts))
        bs = self.settings.score_batch_size
        with torch.inference_mode():
            for start in range(0, len(prompts), bs):
                rows = order[start:start + bs]
                z[rows] = self.logits([prompts[i] for i in rows]).cpu().numpy()
        p = 1.0 / (1.0 + np.exp(-z))
        self.last_prompt_tokens = lengths[:n] + (lengths[n:] if self.settings.symmetric else 0)
        self.prompt_tokens_total += int(lengths.sum())
        self.pairs_total += n
        return (p[:n] + p[n:]) / 2.0 if self.settings.symmetric else p

    def cost(self) -> dict:
        """The judge's own compute since creation: pairs scored, prompts run, prompt tokens."""
        return {"pairs": self.pairs_total, "prompts": self.pairs_total * (2 if self.settings.symmetric else 1),
                "prompt_tokens": self.prompt_tokens_total}

    # ------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """judge.json, plus the weights and tokenizer when fine-tuned; returns judge.json's path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.weights is not None:
            with hf_quiet():
                self.model.save_pretrained(str(out), safe_serialization=True)
                self.tokenizer.save_pretrained(str(out))
        spec = {"type": "llm", "name": self.name, "weights": self.weights,
                "settings": dataclasses.asdict(self.settings), "prompt": PROMPT,
                "label_words": {str(k): list(v) for k, v in LABEL_WORDS.items()},
                **{k: v for k, v in self.meta.items() if k not in ("type", "name", "weights", "settings")}}
        return write_judge_file(out, spec)

    @classmethod
    def load(cls, path: str | Path, seed: int = 0) -> LLMJudge:
        spec, directory = open_judge_dir(path, "llm")
        if spec.get("prompt", PROMPT) != PROMPT:
            raise DPError(f"the llm judge in {directory} was made with another prompt than this dp's; retrain it")
        s = settings_from(LLMSettings, {**spec.get("settings", {}), "device": None})
        weights = spec.get("weights")
        model, tok = load_lm(directory / weights if weights else resolve_model(s.model), s)
        meta = {k: v for k, v in spec.items() if k not in ("type", "name", "weights", "settings", "prompt",
                                                            "label_words")}
        return cls(model, tok, s, meta, weights)

    @classmethod
    def create(cls, seed: int = 0, **settings) -> LLMJudge:
        """The zero-shot judge (default: SmolLM2-135M-Instruct); `settings` are LLMSettings fields."""
        s = settings_from(LLMSettings, settings)
        model, tok = load_lm(resolve_model(s.model), s)
        return cls(model, tok, s)

