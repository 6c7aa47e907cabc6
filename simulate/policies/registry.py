"""POLICIES: every replayable policy by name, with its settings object.

`make_policy(name, **settings)` builds one; a name not here is a one-line error.
Settings not meant for a policy are ignored, so one set of CLI flags serves all.
"""

from __future__ import annotations

import dataclasses

from dp.errors import DPError
from dp.simulate.policies.basic import Consensus, RandomParams, RandomPrune
from dp.simulate.policies.deepconf import DeepConf, DeepConfParams
from dp.simulate.policies.deepprune import DeepPrune, DeepPruneParams
from dp.simulate.policies.sequential import ESC, Adaptive, AdaptiveParams, ESCParams
from dp.simulate.policies.slimsc import SlimSC, SlimSCParams

# name -> (class, settings dataclass or None, fixed settings, judge override)
POLICIES: dict[str, tuple] = {
    "cons": (Consensus, None, {}, None),
    "deepprune": (DeepPrune, DeepPruneParams, {}, None),
    "deepprune-oracle": (DeepPrune, DeepPruneParams, {}, "oracle"),
    "deepconf-low": (DeepConf, DeepConfParams, {"percentile": 90.0}, None),
    "deepconf-high": (DeepConf, DeepConfParams, {"percentile": 10.0}, None),
    "esc": (ESC, ESCParams, {}, None),
    "adaptive": (Adaptive, AdaptiveParams, {}, None),
    "random": (RandomPrune, RandomParams, {}, None),
    "slimsc": (SlimSC, SlimSCParams, {}, None),
}


def make_policy(name: str, **settings):
    """A policy object named `name` with the settings that apply to it; `.name` is set to `name`."""
    if name not in POLICIES:
        raise DPError(f"unknown policy '{name}'; known: {', '.join(sorted(POLICIES))}")
    cls, params_cls, fixed, _ = POLICIES[name]
    if params_cls is None:
        policy = cls()
        policy.params_dict = {}
    else:
        fields = {f.name for f in dataclasses.fields(params_cls)}
        kw = {k: v for k, v in settings.items() if k in fields and v is not None}
        kw.update(fixed)
        params = params_cls(**kw)
        policy = cls(params)
        policy.params_dict = dataclasses.asdict(params)
    policy.name = name
    policy.judge_override = POLICIES[name][3]
    return policy


def setting_names(policies=None) -> set[str]:
    """The settings the named policies (default: all) take."""
    out: set[str] = set()
    for name in POLICIES if policies is None else policies:
        params_cls = POLICIES[name][1]
        if params_cls is not None:
            out |= {f.name for f in dataclasses.fields(params_cls)} - set(POLICIES[name][2])
    return out


def has_modes(name: str) -> bool:
    """Whether a policy decides at decision points (so `dp live` has keep and resume modes for it)."""
    from dp.simulate.policies.base import PrefixPolicy

    return name in POLICIES and issubclass(POLICIES[name][0], PrefixPolicy) and POLICIES[name][3] is None
