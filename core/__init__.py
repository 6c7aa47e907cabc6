"""dp: DeepPrune reproduced. A trace cache, a pruning simulator, judges and a live runner.

`import dp` gives the notebook API (`dp.api`): `open_cache`, `runs`, `traces`, `replay`,
`replay_results`, `evaluate_judge`, `draw_figures`, loaded on first use so that `import dp` stays
light. The top package also holds what every stage shares: typed records (`dp.types`), answer
extraction and equivalence (`dp.answers`), votes (`dp.votes`), problem loaders (`dp.problems`),
DeepConf's token confidence (`dp.confidence`), seeds (`dp.seeds`), provenance (`dp.provenance`).
Stages, bottom to top: `dp.generate`, `dp.cache`, `dp.judge`, `dp.simulate`, `dp.figures`, then
`dp.api` and the command line `dp.cli` (the layers are contracts in pyproject.toml).
"""

__version__ = "0.1.0"

API = ("open_cache", "runs", "traces", "replay", "replay_results", "evaluate_judge", "draw_figures")


def __getattr__(name: str):
    if name in API:  # loaded on first use, by name: the base package itself imports no stage
        import importlib

        return getattr(importlib.import_module("dp.api"), name)
    raise AttributeError(f"module 'dp' has no attribute {name!r}")
