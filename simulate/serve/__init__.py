"""`dp serve`: pruned parallel reasoning behind an OpenAI-compatible HTTP endpoint.

The request schema (`request`), the ASGI app (`app`), recording served requests as a run
(`record`), Prometheus metrics (`metrics`) and the process around it (`run`). Built on
`dp.simulate.live`; nothing below imports it.
"""
