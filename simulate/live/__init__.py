"""Live: the same policy objects against a real engine, stopping the traces they prune.

`arrival` finds decision points in streamed deltas, `problem` runs one problem's N traces, one
driver per policy kind (`prefix`, `deepconf`, `waves`, `slimsc`), `run` is the library call behind
`dp live` (problems in flight, `--compare` with the replay). Never imports `dp.simulate.serve`.
"""
