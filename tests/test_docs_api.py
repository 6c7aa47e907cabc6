"""Every Python example of docs/api.md runs as written, in order, on the real trace files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_api_example_runs(real_cache, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 6, "docs/api.md lost its examples"
    shutil.copy(real_cache, tmp_path / "real.duckdb")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"docs/api.md block {i + 1} failed: {e!r}\n{code}") from e
    out = capsys.readouterr().out
    assert "qwen" in out and "esc" in out  # dp.runs listed both runs
    rows = namespace["rows"]
    assert set(rows.policy) == {"deepprune", "deepprune-oracle", "cons", "esc"}
    cons = rows.set_index("policy").loc["cons"]
    assert cons.token_reduction == 0.0 and 0.0 < cons.accuracy <= 1.0
    assert 0.0 <= namespace["metrics"]["auroc"] <= 1.0
    assert namespace["cross"]["judge_in_sample"] is False
    assert (tmp_path / "figures-qwen" / "report.md").exists()


def test_the_api_is_what_import_dp_gives():
    import dp

    for name in dp.API:
        assert callable(getattr(dp, name)), name
        assert getattr(dp, name).__doc__, f"dp.{name} has no docstring"
