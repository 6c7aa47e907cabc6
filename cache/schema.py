"""The cache's tables, its schema version and the migrations between versions.

All DDL lives here. `ensure_schema` creates a new file or upgrades an old one;
`check_schema` refuses a file that is not a dp cache or is of a newer version.
Nothing here reads or writes traces.
"""

from __future__ import annotations

import duckdb

from dp.errors import DPError

APP = "dp-trace-cache"
SCHEMA_VERSION = 2

# version -> statements that bring a file from version-1 to version.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE dp_meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
        """CREATE TABLE runs (
            run VARCHAR PRIMARY KEY,
            model VARCHAR,            -- model name or path
            engine VARCHAR,           -- 'vllm 0.32.0', 'transformers 5.x', 'import'
            tokenizer VARCHAR,        -- tokenizer that produced the token ids
            sampling JSON,            -- SamplingSpec as JSON (n, temperature, top_p, max_tokens, seed, ...)
            prompt_template VARCHAR,  -- the prompt as a template with {question}
            source VARCHAR,           -- 'generate', 'import:esc', 'live', ...
            dataset VARCHAR,
            n INTEGER,                -- traces per problem asked for
            seed BIGINT,              -- run seed; per-trace seeds derive from it
            dp_version VARCHAR,
            git_hash VARCHAR,
            created_at TIMESTAMP,
            settings JSON             -- anything else that made the run
        )""",
        """CREATE TABLE problems (
            run VARCHAR, problem_id VARCHAR, dataset VARCHAR, question VARCHAR,
            gold VARCHAR, kind VARCHAR, choices JSON,
            PRIMARY KEY (run, problem_id)
        )""",
        """CREATE TABLE traces (
            trace_id INTEGER PRIMARY KEY,  -- global id, keys tokens and judge scores
            run VARCHAR, problem_id VARCHAR,
            idx INTEGER,                   -- 0..N-1 within (run, problem)
            seed BIGINT,                   -- per-trace sampling seed (NULL when imported)
            n_tokens INTEGER,
            text VARCHAR,
            answer VARCHAR,                -- extracted answer, NULL when none found
            answer_class INTEGER,          -- equivalence class within the problem, -1 = no answer
            correct BOOLEAN,               -- class equivalent to gold (NULL without gold)
            finish_reason VARCHAR,         -- stop | length | abort | unknown
            UNIQUE (run, problem_id, idx)
        )""",
        """CREATE TABLE tokens (
            trace_id INTEGER,
            pos INTEGER,          -- 0-based position in the generated tokens
            token_id INTEGER,
            logprob FLOAT,        -- log-prob of the sampled token, NULL when unknown
            confidence FLOAT,     -- dp.confidence.token_confidence, NULL when unknown
            end_offset INTEGER    -- end of this token in traces.text (characters)
        )""",
        """CREATE TABLE topk (
            trace_id INTEGER, pos INTEGER, rank TINYINT, token_id INTEGER, logprob FLOAT
        )""",
        """CREATE TABLE judge_scores (
            judge VARCHAR, rule VARCHAR, trace_a INTEGER, trace_b INTEGER, score DOUBLE,
            PRIMARY KEY (judge, rule, trace_a, trace_b)
        )""",
        """CREATE TABLE sim_points (
            point_id INTEGER, run VARCHAR, policy VARCHAR, params JSON,
            accounting VARCHAR, orders INTEGER, seed BIGINT,
            tokens DOUBLE, tokens_std DOUBLE, full_tokens DOUBLE, token_reduction DOUBLE,
            accuracy DOUBLE, accuracy_std DOUBLE, pass_rate DOUBLE, judge_pairs DOUBLE,
            result JSON, dp_version VARCHAR, git_hash VARCHAR, created_at TIMESTAMP
        )""",
        """CREATE TABLE live_traces (
            run VARCHAR, problem_id VARCHAR, idx INTEGER,
            arrival INTEGER,          -- order in which the trace reached its decision point
            decision VARCHAR,         -- what the policy decided: keep | prune | finish | ...
            decision_token INTEGER,   -- tokens the trace had when the policy decided
            tokens_generated INTEGER  -- tokens the engine really produced for this trace
        )""",
    ],
    2: [
        """CREATE TABLE problem_settings (
            run VARCHAR, problem_id VARCHAR,
            settings JSON,            -- what made or happened to this one problem (a served request)
            PRIMARY KEY (run, problem_id)
        )""",
    ],
}


def _meta(con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "dp_meta" not in tables:
        return None if tables else {}
    return dict(con.execute("SELECT key, value FROM dp_meta").fetchall())


def check_schema(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """The file's schema version; DPError if it is not a dp cache or is too new."""
    meta = _meta(con)
    if meta is None or (meta and meta.get("app") != APP):
        raise DPError(f"{path} is a DuckDB file but not a dp trace cache")
    if not meta:
        return 0
    version = int(meta.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        raise DPError(
            f"{path} has cache schema version {version}; this dp reads up to {SCHEMA_VERSION}"
        )
    return version


def ensure_schema(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Create the tables in an empty file or migrate an older one, in one transaction."""
    version = check_schema(con, path)
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[v]:
                con.execute(stmt)
        con.execute("INSERT OR REPLACE INTO dp_meta VALUES ('app', ?)", [APP])
        con.execute("INSERT OR REPLACE INTO dp_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
