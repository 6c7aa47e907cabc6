"""Replaying pruning policies on cached traces: exact tokens, accuracy and spread over orders.

`context` turns a cached problem into arrays a policy reads; `policy` holds the
interface every policy implements and the one token-accounting rule; one module
per method (`deepprune`, `deepconf`, `sequential` for ESC/adaptive, `basic` for
cons@N and random pruning); `replay` drives them over many arrival orders;
`sweep` runs grids of settings and stores each point. Knows nothing about vLLM.
"""
