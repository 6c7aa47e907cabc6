"""dp: DeepPrune reproduced. A trace cache, a pruning simulator, judges and a live runner.

The top package holds what every stage shares: typed records (`dp.types`), answer
extraction and equivalence (`dp.answers`), problem loaders (`dp.problems`), the one
definition of DeepConf token confidence (`dp.confidence`), seed derivation
(`dp.seeds`), provenance (`dp.provenance`) and the CLI skin (`dp.cli`).
Sub-packages: `dp.cache`, `dp.generate`, `dp.judge`, `dp.simulate`, `dp.figures`.
"""

__version__ = "0.1.0"
