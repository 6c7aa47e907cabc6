"""The pruning policies: DeepPrune, cons@N, random, DeepConf, ESC, Adaptive-Consistency, Slim-SC,
short-m@k, and `POLICIES`, the registry by name.

A policy turns the arrays of one problem (decision points, lengths, answer classes, judge scores it
is handed) into a `Plan`: which traces stop where, and who votes. Pure numpy. Never imports the
cache, an engine, the replay or live drivers, or loads a judge model: whoever builds a policy hands
it what it needs. The same objects serve `dp simulate` (replay) and `dp live` (the real engine).
"""
