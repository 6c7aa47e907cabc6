"""FigureSettings: everything `dp figures` was asked for, validated once and recorded in the report.

Also decides which judge the figures use: the first `--judge` given, else the
shipped `features` judge, else `jaccard` (with a note saying so). It loads no
traces and draws nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dp.errors import DPError
from dp.judge.base import load_judge
from dp.judge.truncation import TruncationRule
from dp.simulate.replay.driver import ORDER_KINDS
from dp.simulate.replay.sweep import parse_sweep

DEFAULT_JUDGE = "features"
FALLBACK_JUDGE = "jaccard"
ROC_JUDGES = ("oracle", "random", "jaccard", "features")
MAIN_POLICIES = ("cons", "deepconf-low", "deepconf-high", "deepprune", "esc", "adaptive", "random",
                 "deepprune-oracle")
CONFIDENCE_POLICIES = ("deepconf-low", "deepconf-high")
DEFAULT_TAUS = "0.05:0.95:0.05"
DEFAULT_TOKEN_KS = (25, 50, 100, 200, 500)
DEFAULT_WORD_KS = (5, 10, 25, 50)


@dataclass(frozen=True)
class FigureSettings:
    """Settings of one `dp figures` call. Stored verbatim in report.md and figures.json."""

    judges: tuple[str, ...] = ()  # --judge: the first drives DeepPrune (figs 3-6); all join the ROC figure
    truncate: str = "words:25"  # prefix rule of the judge and of DeepPrune's decision points
    orders: int = 20  # seeded arrival orders per problem (>= 1)
    order_kind: str = "random"  # random | prefix-length
    seed: int = 0  # orders, pair samples, the random judge and policy randomness
    tau: float = 0.5  # DeepPrune threshold of the main table, in [0, 1]
    taus: tuple[float, ...] = tuple(parse_sweep("tau=" + DEFAULT_TAUS)[1])  # threshold ablation grid
    token_ks: tuple[int, ...] = DEFAULT_TOKEN_KS  # truncation ablation: tokens:k
    word_ks: tuple[int, ...] = DEFAULT_WORD_KS  # truncation ablation: words:k
    ablation_judge: str | None = None  # judge of the truncation ablation (None: the figures' judge)
    max_pairs: int = 2000  # judge pairs sampled per run for the ROC and ablation figures (>= 2)
    fresh: bool = False  # recompute every simulator point instead of reusing stored ones

    def __post_init__(self):
        TruncationRule.parse(self.truncate)
        if self.orders < 1:
            raise DPError(f"orders must be >= 1, got {self.orders}")
        if self.order_kind not in ORDER_KINDS:
            raise DPError(f"unknown order '{self.order_kind}'; known: {', '.join(ORDER_KINDS)}")
        if not 0.0 <= self.tau <= 1.0:
            raise DPError(f"tau must be in [0, 1], got {self.tau}")
        if not self.taus or any(not 0.0 <= t <= 1.0 for t in self.taus):
            raise DPError(f"threshold grid must be non-empty values in [0, 1], got {list(self.taus)}")
        for name in ("token_ks", "word_ks"):
            if any(int(k) < 1 for k in getattr(self, name)):
                raise DPError(f"{name} must be integers >= 1, got {list(getattr(self, name))}")
        if self.max_pairs < 2:
            raise DPError(f"max pairs must be >= 2, got {self.max_pairs}")

    @staticmethod
    def parse_taus(spec: str) -> tuple[float, ...]:
        """`0.05:0.95:0.05` (start:stop:step, stop included) or `0.25,0.5,0.75`."""
        return tuple(float(t) for t in parse_sweep("tau=" + spec)[1])

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ResolvedJudges:
    """The judges one figures call really uses, with notes on every fallback."""

    main: str  # drives DeepPrune in the threshold, main-table and Pareto figures
    ablation: str  # the truncation ablation's judge
    roc: tuple[str, ...]  # every judge drawn in the ROC figure (may still fail to load there)
    notes: tuple[str, ...] = ()


def _loads(name: str) -> str | None:
    """None when `name` loads; the one-line reason otherwise."""
    try:
        load_judge(name)
    except (DPError, ImportError) as e:
        return str(e)
    return None


def resolve_judges(s: FigureSettings) -> ResolvedJudges:
    """The first --judge, else `features`, else `jaccard` (noted); ROC: defaults plus every --judge."""
    notes = []
    if s.judges:
        main = s.judges[0]
        why = _loads(main)
        if why:
            raise DPError(f"judge '{main}' cannot be loaded: {why}")
    else:
        why = _loads(DEFAULT_JUDGE)
        main = DEFAULT_JUDGE if why is None else FALLBACK_JUDGE
        if why:
            notes.append(f"the default judge '{DEFAULT_JUDGE}' is not available ({why}); "
                         f"the figures use '{FALLBACK_JUDGE}' instead")
    ablation = s.ablation_judge or main
    if s.ablation_judge and (why := _loads(ablation)):
        raise DPError(f"ablation judge '{ablation}' cannot be loaded: {why}")
    roc = tuple(dict.fromkeys((*ROC_JUDGES, *s.judges)))
    return ResolvedJudges(main=main, ablation=ablation, roc=roc, notes=tuple(notes))
