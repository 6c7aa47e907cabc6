"""Resumable, validated fine-tuning of a neural judge: the loop behind `dp judge train --judge llm`.

`finetune` trains the parameters of `model` that require grad (the caller picks them:
every weight, the top layers, or LoRA adapters; see `dp.judge.llm_train`) on focal loss
(`dp.judge.losses.focal_loss`) with AdamW, linear warm-up then decay, gradient clipping,
and `grad_accum` micro-batches of `batch_size` pairs per optimiser step. Batches and
side swaps are all drawn up front from the seed, so a resumed run takes exactly the
steps an uninterrupted one takes.

- Validation: every `eval_every` steps `validate()` (the caller's: AUROC on pairs of
  problems never trained on) is called; the best state by AUROC is kept, and after
  `patience` evaluations without improvement training stops early. The best state is
  put back at the end.
- Checkpoints: every `checkpoint_every` steps (and after each evaluation) the trainable
  tensors, the optimiser, the scheduler, the history and the best state are written to
  `ckpt_dir/state.pt` (to a temporary file, then renamed). `resume=True` continues from it;
  the checkpoint records a fingerprint of the settings and data and refuses another.
- `time_limit` (seconds): stop at the first checkpoint past it and return
  `complete = False`; run again with `resume` to go on (training in chunks).
- Progress: a bar on a terminal (step, loss, last validation AUROC); elsewhere one line
  per evaluation on stderr.

Knows no model architecture, tokenizer or cache.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.judge.losses import LoopSettings, batch_order, focal_loss, schedule
from dp.seeds import rng

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class FinetuneSettings(LoopSettings):
    """LoopSettings plus accumulation, validation, early stopping and checkpoints."""

    grad_accum: int = 1  # micro-batches of batch_size pairs per optimiser step (>= 1)
    eval_every: int = 0  # optimiser steps between validations; 0 = never
    val_share: float = 0.0  # share of the training questions (by digest) held out for validation, in [0, 1)
    val_pairs: int = 128  # at most this many distinct validation pairs (seeded sample)
    patience: int = 0  # evaluations without a better AUROC before stopping; 0 = never stop early
    checkpoint_every: int = 25  # optimiser steps between checkpoints (>= 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("grad_accum", "checkpoint_every", "val_pairs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise DPError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("eval_every", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise DPError(f"{name} must be an integer >= 0, got {v!r}")
        if not 0 <= self.val_share < 1:
            raise DPError(f"val_share must be in [0, 1), got {self.val_share!r}")
        if self.eval_every and not self.val_share:
            raise DPError("eval_every needs val_share > 0 (validation problems)")


def split_problems(problems: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(m,) bool: True for pairs whose problem is in the seeded validation share of the problems.

    `problems`: (m,) the key each pair is grouped by; pass `PairSet.question_keys()` (question
    digests), so a question held out for validation is never trained on under another run."""
    names = np.unique(problems.astype(str))
    k = int(round(share * names.size))
    if share and (k < 1 or k >= names.size):
        raise DPError(f"val_share {share} of {names.size} problems leaves no validation or no training problem")
    val = set(rng(seed, "finetune", "val").choice(names, k, replace=False).tolist()) if k else set()
    return np.fromiter((str(p) in val for p in problems), dtype=bool, count=problems.size)


def _trainable(model) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class _Progress:
    """A tqdm bar on a terminal; one line per evaluation otherwise."""

    def __init__(self, total: int, initial: int, what: str):
        self.tty = sys.stderr.isatty()
        self.what = what
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"train {what}", unit="step", file=sys.stderr,
                            dynamic_ncols=True)
        self.total = total

    def step(self, loss: float, val: float | None) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", val_auroc="-" if val is None else f"{val:.4f}", refresh=False)
            self.bar.update(1)

    def note(self, step: int, loss: float, val: float, seconds: float) -> None:
        if not self.tty:
            print(f"train {self.what}: step {step}/{self.total} loss {loss:.4f} val_auroc {val:.4f} "
                  f"({seconds:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def finetune(model, batch_logits: Callable, labels: np.ndarray, rows: np.ndarray, s: FinetuneSettings,
             seed: int, what: str, validate: Callable[[], float] | None = None, ckpt_dir: Path | None = None,
             resume: bool = False, time_limit: float | None = None, fingerprint: str = "") -> dict:
    """Train `model` in place on the pairs `rows` (indices into `labels`); return the run's summary.

    batch_logits(rows, swap) -> (len(rows),) logits with grad, each pair right-left where swap.
    The summary has `complete` (False when stopped by `time_limit`), `step`, `history`
    ([step, mean loss since the last evaluation, validation AUROC]) and timing.
    """
    import torch

    params = _trainable(model)
    if not params:
        raise DPError("nothing to train: no parameter requires grad")
    opt = torch.optim.AdamW(list(params.values()), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: schedule(k, s.steps, s.warmup))
    micro = batch_order(rows.size, s.steps * s.grad_accum, s.batch_size, seed, what)
    swaps = rng(seed, what, "swap").random((len(micro), s.batch_size)) < 0.5
    state = {"step": 0, "losses": [], "history": [], "best_auroc": None, "best_step": None, "best": None,
             "seconds": 0.0, "stopped_early": False}
    path = Path(ckpt_dir) / STATE_FILE if ckpt_dir is not None else None
    if resume and path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") != fingerprint:
            raise DPError(f"the checkpoint in {path.parent} was made with other settings or pairs; "
                          "remove it or train without --resume into another directory")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved["params"][n])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]

    def checkpoint() -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"fingerprint": fingerprint, "params": {n: p.detach().clone() for n, p in params.items()},
                      "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state}, path)

    def evaluate(step: int, t0: float) -> bool:
        """Validate, keep the best; True when patience ran out."""
        model.eval()
        val = float(validate())
        model.train()
        since = state["history"][-1][0] if state["history"] else 0
        loss = float(np.mean(state["losses"][since:step])) if step > since else float("nan")
        state["history"].append([step, loss, val])
        if state["best_auroc"] is None or val > state["best_auroc"]:
            state["best_auroc"], state["best_step"] = val, step
            state["best"] = {n: p.detach().clone() for n, p in params.items()}
        progress.note(step, loss, val, state["seconds"] + time.perf_counter() - t0)
        evals_since_best = sum(1 for h in state["history"] if h[0] > state["best_step"])
        return bool(s.patience) and evals_since_best >= s.patience

    y_all = np.asarray(labels)
    progress = _Progress(s.steps, state["step"], what)
    t0 = started = time.perf_counter()  # the time limit counts from here (model loading excluded)
    complete = True
    model.train()
    try:
        if validate is not None and s.eval_every and not state["history"] and state["step"] == 0:
            evaluate(0, t0)  # the starting point (zero-shot)
        while state["step"] < s.steps and not state["stopped_early"]:
            step = state["step"]
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for m in range(step * s.grad_accum, (step + 1) * s.grad_accum):
                idx = rows[micro[m]]
                swap = swaps[m, :idx.size] if s.swap else np.zeros(idx.size, dtype=bool)
                z = batch_logits(idx, swap)
                y = torch.as_tensor(y_all[idx].astype(np.float32), device=z.device)
                loss = focal_loss(z, y, s.focal_alpha, s.focal_gamma) / s.grad_accum
                loss.backward()
                total += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            opt.step()
            sched.step()
            state["losses"].append(total)
            state["step"] = step = step + 1
            val = state["history"][-1][2] if state["history"] else None
            progress.step(total, val)
            evaluated = False
            if validate is not None and s.eval_every and (step % s.eval_every == 0 or step == s.steps):
                state["stopped_early"] = evaluate(step, t0)
                evaluated = True
            if evaluated or step % s.checkpoint_every == 0 or step == s.steps:
                state["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
                if (time_limit is not None and step < s.steps and not state["stopped_early"]
                        and time.perf_counter() - started >= time_limit):
                    complete = False
                    break
    finally:
        progress.close()
    model.eval()
    if complete and state["best"] is not None:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["best"][n])
    done = state["step"]
    seen = done * s.grad_accum * s.batch_size
    return {"complete": complete, "step": done, "steps": s.steps, "train_pairs": int(rows.size),
            "pairs_seen": seen, "seconds": round(state["seconds"], 1),
            "pairs_per_s": round(seen / state["seconds"], 2) if state["seconds"] else None,
            "loss_first_10": float(np.mean(state["losses"][:10])) if state["losses"] else None,
            "loss_last_10": float(np.mean(state["losses"][-10:])) if state["losses"] else None,
            "history": state["history"], "best_val_auroc": state["best_auroc"], "best_step": state["best_step"],
            "stopped_early": state["stopped_early"]}

