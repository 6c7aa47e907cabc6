"""Fine-tuning the `llm` judge (`dp judge train --judge llm`): the paper's recipe, made to fit a CPU.

The recipe: P(yes) from the yes/no prompt over the two prefixes (`dp.judge.llm`), focal
loss, the "different" class oversampled in the pairs (`--oversample 2`). What is trained
is a setting (`LLMTrainSettings`): every weight (default), only the top `train_layers`
decoder layers and the final norm, or LoRA adapters of rank `lora_r` (with `peft`;
merged into the weights before saving, so the saved judge needs no peft). The pairs are
split by problem (`val_share`): the validation problems are never trained on and give
the validation AUROC of `dp.judge.finetune`, which keeps the best state, stops early and
checkpoints into `OUT/checkpoint/` so `--resume` continues an interrupted or time-limited
run (`--time-limit`). The finished judge is a directory (judge.json, weights, tokenizer)
that `--judge PATH` loads; the checkpoint is removed once it is written.

The same code trains Qwen3-4B-Instruct on a GPU (`--set model=DIR`, bf16 on cuda).
Nothing here scores pairs outside training or reads the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.judge.finetune import FinetuneSettings, finetune, split_problems
from dp.judge.llm import LLMJudge, LLMSettings, load_lm
from dp.judge.losses import sample_rows, seed_torch, settings_from
from dp.models import resolve_model

CHECKPOINT_DIR = "checkpoint"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class LLMTrainSettings(LLMSettings, FinetuneSettings):
    """LLMSettings plus what is trained and how it is validated (FinetuneSettings)."""

    train_layers: int | None = None  # train only the top k decoder layers (+ final norm); None = all weights
    lora_r: int = 0  # LoRA rank (peft) on the attention and MLP projections; 0 = no LoRA
    lora_alpha: float | None = None  # LoRA scale numerator; None = 2 * lora_r
    max_metric_pairs: int = 256  # train_judge scores at most this many training pairs for train_auroc

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_layers is not None and (not isinstance(self.train_layers, int) or self.train_layers < 1):
            raise DPError(f"train_layers must be an integer >= 1 or null, got {self.train_layers!r}")
        if not isinstance(self.lora_r, int) or self.lora_r < 0:
            raise DPError(f"lora_r must be an integer >= 0, got {self.lora_r!r}")

    def judge_settings(self) -> LLMSettings:
        """The scoring settings stored with the trained judge."""
        names = {f.name for f in dataclasses.fields(LLMSettings)}
        return LLMSettings(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


def _decoder(model):
    inner = model.base_model
    if not hasattr(inner, "layers"):
        raise DPError(f"train_layers / lora need a decoder with .layers ({type(model).__name__} has none)")
    return inner


def choose_trainable(model, s: LLMTrainSettings):
    """Set requires_grad for what `s` trains; returns the peft model when LoRA is on (else None)."""
    if s.lora_r:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise DPError("lora_r needs peft (pip install -e '.[engine]')") from None
        n_layers = len(_decoder(model).layers)
        layers = list(range(n_layers - s.train_layers, n_layers)) if s.train_layers else None
        config = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha or 2 * s.lora_r, lora_dropout=0.0,
                            target_modules=list(LORA_TARGETS), layers_to_transform=layers, bias="none")
        return get_peft_model(model, config)  # injects adapters into `model` in place, freezes the rest
    if s.train_layers:
        dec = _decoder(model)
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in dec.layers[-s.train_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        if getattr(dec, "norm", None) is not None:
            for p in dec.norm.parameters():
                p.requires_grad_(True)
    return None


def _fingerprint(s: LLMTrainSettings, pairs, seed: int) -> str:
    data = [s.__class__.__name__, dataclasses.asdict(s), seed, pairs.a_ids.tolist(), pairs.b_ids.tolist(),
            pairs.labels.tolist(), [p.n_tokens for p in pairs.left], [p.n_tokens for p in pairs.right]]
    return hashlib.blake2b(json.dumps(data, default=str).encode(), digest_size=8).hexdigest()


def _val_rows(pairs, is_val: np.ndarray, max_pairs: int, seed: int) -> np.ndarray:
    """Distinct validation pairs (oversampled copies dropped): up to half of `max_pairs` of each
    label, seeded. AUROC does not depend on the label ratio; balancing it cuts its noise."""
    rows = np.flatnonzero(is_val)
    _, first = np.unique(np.stack([pairs.a_ids[rows], pairs.b_ids[rows]], axis=1), axis=0, return_index=True)
    rows = np.sort(rows[first])
    y = np.asarray(pairs.labels)[rows]
    neg, pos = rows[y == 0], rows[y == 1]
    k_neg = min(neg.size, max_pairs // 2)
    k_pos = min(pos.size, max_pairs - k_neg)
    pick = [neg[sample_rows(neg.size, k_neg, seed, "llm-val-0")], pos[sample_rows(pos.size, k_pos, seed, "llm-val-1")]]
    return np.sort(np.concatenate(pick))


def train_llm_judge(pairs, s: LLMTrainSettings, seed: int = 0, meta: dict | None = None,
                    out: str | Path | None = None, resume: bool = False,
                    time_limit: float | None = None) -> LLMJudge | dict:
    """Fine-tune on a PairSet. Returns the judge (saved to `out`), or the progress summary (a dict
    with complete = False) when `time_limit` stopped it; the checkpoint is then in out/checkpoint."""
    from dp.judge.metrics import auroc

    y = np.asarray(pairs.labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise DPError("cannot train a judge: pairs of both labels needed")
    ckpt = Path(out) / CHECKPOINT_DIR if out is not None else None
    if ckpt is not None and (ckpt / "state.pt").exists() and not resume:
        raise DPError(f"{out} holds an unfinished training; pass --resume to continue it (or remove {ckpt})")
    is_val = split_problems(pairs.problems, s.val_share, seed) if s.val_share else np.zeros(pairs.n, dtype=bool)
    train_rows = np.flatnonzero(~is_val)
    if len(np.unique(y[train_rows])) < 2:
        raise DPError("the training problems have pairs of one label only")
    train_rows = train_rows[sample_rows(train_rows.size, s.max_train_pairs, seed, "llm")]
    val_rows = _val_rows(pairs, is_val, s.val_pairs, seed)
    if s.eval_every and len(np.unique(y[val_rows])) < 2:
        raise DPError("the validation problems have pairs of one label only; change val_share or seed")

    seed_torch(seed, "llm")
    model, tok = load_lm(resolve_model(s.model), s)
    peft_model = choose_trainable(model, s)
    judge = LLMJudge(model, tok, s.judge_settings(), meta, weights=".")
    judge.train_settings = s
    if s.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    cut = {}  # prefix text -> cut text, filled on first use

    def text(p):
        if p.text not in cut:
            cut[p.text] = judge.cut([p.text])[0]
        return cut[p.text]

    def batch_logits(rows, swap):
        prompts = []
        for r, sw in zip(rows.tolist(), swap.tolist(), strict=True):
            a, b = text(pairs.left[r]), text(pairs.right[r])
            prompts.append(judge.prompt_ids(b, a) if sw else judge.prompt_ids(a, b))
        return judge.logits(prompts)

    def validate() -> float:
        scores = judge.score([pairs.left[i] for i in val_rows], [pairs.right[i] for i in val_rows])
        return auroc(scores, y[val_rows])

    summary = finetune(model, batch_logits, y, train_rows, s, seed, "llm",
                       validate if s.eval_every else None, ckpt, resume, time_limit, _fingerprint(s, pairs, seed))
    summary["val_pairs"] = int(val_rows.size) if s.eval_every else 0
    if not summary["complete"]:
        return summary
    if s.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    if peft_model is not None:
        judge.model = peft_model.merge_and_unload()
    for p in judge.model.parameters():
        p.requires_grad_(False)
    judge.meta = {**judge.meta, "seed": seed, "training": summary,
                  "train_settings": dataclasses.asdict(s)}
    judge.name = judge.compute_name()
    if out is not None:
        judge.save(out)
        if ckpt is not None and ckpt.exists():
            shutil.rmtree(ckpt)
    return judge


def trainer(pairs, out: Path, seed: int, meta: dict, resume: bool = False, time_limit: float | None = None,
            **settings):
    """`dp.judge.train.TRAINERS` entry: settings are LLMTrainSettings fields (`--set k=v`, `--steps`)."""
    s = settings_from(LLMTrainSettings, settings)
    return train_llm_judge(pairs, s, seed, meta, out, resume, time_limit)
