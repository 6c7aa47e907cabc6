"""Quiet by default: vLLM's, torch's and Python's warnings only with `--verbose` / DP_LOG.

`apply_quiet()` runs before vLLM is imported (in `dp` and, through
`dp.interrupts`, in every engine process it spawns). Unless DP_LOG names a
level (`--verbose` sets "info"), vLLM logs errors only, torch's C++ log errors
only, and Python warnings are not shown; the settings travel to the engine
processes as environment variables. A user's own VLLM_LOGGING_LEVEL wins.
"""

from __future__ import annotations

import logging
import os


def log_level() -> str:
    """The level for library logs: DP_LOG (e.g. info, warning), default error."""
    return os.environ.get("DP_LOG", "error").upper()


def is_quiet() -> bool:
    """True unless DP_LOG asks for library logs (debug, info or warning)."""
    return log_level() not in ("DEBUG", "INFO", "WARNING")


def apply_quiet() -> None:
    level = log_level()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", level)
    if level in ("DEBUG", "INFO", "WARNING"):
        return
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import warnings

    warnings.simplefilter("ignore")
    # vLLM warns at import, before its own log handler exists (Python's last-resort handler prints it)
    logging.getLogger("vllm").setLevel(getattr(logging, os.environ["VLLM_LOGGING_LEVEL"], logging.ERROR))
