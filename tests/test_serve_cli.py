"""`dp serve` refuses bad settings with one line before it loads the engine (fast)."""

from __future__ import annotations

import shutil
import socket

from tests.conftest import invoke


def test_policies_without_a_live_form_and_bad_rules_are_refused():
    r = invoke("serve", "--policy", "deepprune-oracle")
    assert r.exit_code == 2 and "has no live form" in r.output and "deepprune" in r.output
    r = invoke("serve", "--policy", "nope")
    assert r.exit_code == 2 and "unknown policy 'nope'" in r.output
    r = invoke("serve", "--truncate", "lines:3")
    assert r.exit_code == 2 and r.output.startswith("error:") and "Traceback" not in r.output


def test_a_taken_port_is_refused_before_the_engine_starts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = invoke("serve", "--port", s.getsockname()[1])
    assert r.exit_code == 2 and "cannot listen on 127.0.0.1:" in r.output


def test_recording_into_a_run_that_is_not_a_serve_run_is_refused(real_cache, tmp_path):
    path = tmp_path / "c.duckdb"
    shutil.copy(real_cache, path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = invoke("serve", "--port", port, "--record", path, "--record-run", "qwen")
    assert r.exit_code == 2 and "is not a serve run" in r.output
