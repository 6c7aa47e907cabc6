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


def test_the_policy_help_names_every_servable_policy_and_every_setting_is_a_flag():
    from dp.simulate.serve.request import live_policies

    r = invoke("serve", "--help")
    text = " ".join(r.output.split()).replace("- ", "-")  # click wraps help lines at hyphens
    assert r.exit_code == 0 and all(p in text for p in live_policies()), text
    for flag in ("--warmup", "--conf-window", "--window", "--wave", "--confidence", "--every", "--api-key"):
        assert flag in text


def test_server_settings_reach_the_server_bounded_and_warned(monkeypatch):
    import dp.simulate.serve.run as serve_run

    seen = {}

    def fake_serve(settings, on_ready=None, make_engine=None):
        seen["settings"] = settings
        return {"answered": 0}

    monkeypatch.setattr(serve_run, "serve", fake_serve)
    monkeypatch.setenv("DP_API_KEY", "from-env")
    r = invoke("serve", "--policy", "esc", "--window", "4", "--n", "4", "--warmup", "3", "--conf-window", "64")
    assert r.exit_code == 0, r.output
    s = seen["settings"]
    assert s.api_key == "from-env" and s.defaults.policy == "esc"
    assert s.defaults.params == {"window": 4, "warmup": 3, "conf_window": 64}
    assert "warning: esc: window 4 >= N = 4" in r.output
    r = invoke("serve", "--api-key", "given")
    assert r.exit_code == 0 and seen["settings"].api_key == "given"
    r = invoke("serve", "--K", "12000")
    assert r.exit_code == 2 and r.output.startswith("error: --K: 'K' must be <= 64") and "Traceback" not in r.output
