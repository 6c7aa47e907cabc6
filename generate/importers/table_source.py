"""Read a local table in bounded batches: Parquet, JSONL, CSV, Arrow, a folder of Parquet
shards, or a dataset saved with `datasets.Dataset.save_to_disk`.

`open_table(path)` looks at the path once and returns a `TableSource` with the
table's Arrow schema; `batches(columns)` yields `pyarrow.RecordBatch`es of at most
`batch_rows` rows holding only the asked columns, so memory stays bounded whatever
the file size. Only pyarrow is used (no `datasets` import). A `datasets` folder is
read from its `state.json` and Arrow stream shards; a `DatasetDict` folder must be
narrowed to one split. Problems with the path or the file are `DPError`s naming it.

It knows nothing about traces, tokenizers or the cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dp.errors import DPError

PARQUET = (".parquet", ".pq")
JSONL = (".jsonl", ".json", ".ndjson")
CSV = (".csv",)
ARROW = (".arrow", ".feather", ".ipc")


@dataclass(frozen=True)
class TableSource:
    """One local table: where it is, what layout, its schema and its shard files."""

    path: Path
    kind: str  # parquet | parquet-folder | jsonl | csv | arrow | datasets-folder
    files: tuple[Path, ...]
    schema: pa.Schema

    def batches(self, columns: Sequence[str], batch_rows: int = 1024,
                strings: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        """The table's rows, `columns` only, in batches of at most `batch_rows` rows.

        `strings`: columns a CSV reader keeps as text (no guessing "007" into 7).
        """
        columns = list(dict.fromkeys(columns))
        for f in self.files:
            try:
                for batch in _file_batches(f, self.kind, columns, batch_rows, strings):
                    if batch.num_rows:
                        yield batch.select(columns)
            except pa.ArrowException as e:
                raise DPError(f"{f}: cannot read: {_first_line(e)}") from None


def open_table(path: str | Path) -> TableSource:
    """Recognise the layout at `path` and read its schema (no rows are read)."""
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
            raise DPError(f"{path} is a DatasetDict; import one split folder: "
                          + ", ".join(str(path / s) for s in splits))
        if (path / "state.json").is_file():
            state = json.loads((path / "state.json").read_text())
            files = tuple(path / f["filename"] for f in state.get("_data_files", []))
            kind = "datasets-folder"
        else:
            files = tuple(sorted(p for p in path.rglob("*") if p.suffix in PARQUET and p.is_file()))
            kind = "parquet-folder"
        if not files:
            raise DPError(f"{path}: a folder with no Parquet shards and no datasets state.json")
    elif path.is_file():
        suffix = path.suffix.lower()
        kind = next((k for k, s in (("parquet", PARQUET), ("jsonl", JSONL), ("csv", CSV),
                                    ("arrow", ARROW)) if suffix in s), None)
        if kind is None:
            raise DPError(f"{path}: unknown table type '{suffix}' "
                          "(.parquet, .jsonl, .csv, .arrow, a Parquet folder or a datasets folder)")
        files = (path,)
    else:
        raise DPError(f"no such file or folder: {path}")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DPError(f"{missing[0]}: listed shard is missing")
    try:
        schema = _schema(files[0], kind)
    except (pa.ArrowException, OSError) as e:
        raise DPError(f"{files[0]}: not a readable {kind} table: {_first_line(e)}") from None
    return TableSource(path, kind, files, schema)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _schema(f: Path, kind: str) -> pa.Schema:
    if kind in ("parquet", "parquet-folder"):
        import pyarrow.parquet as pq

        return pq.read_schema(f)
    if kind in ("arrow", "datasets-folder"):
        return _open_ipc(f).schema
    if kind == "csv":
        import pyarrow.csv as pcsv

        return pcsv.open_csv(f).schema  # types guessed from the first block
    import pyarrow.json as pjson

    return pjson.open_json(f).schema


def _open_ipc(f: Path):
    import pyarrow.ipc as ipc

    src = pa.memory_map(str(f))
    try:
        return ipc.open_stream(src)  # what save_to_disk writes
    except pa.ArrowInvalid:
        src.seek(0)
        return ipc.open_file(src)


def _rebatch(batches, rows: int) -> Iterator[pa.RecordBatch]:
    for b in batches:
        for start in range(0, b.num_rows, rows):
            yield b.slice(start, rows)


def _file_batches(f: Path, kind: str, columns: list[str], rows: int,
                  strings: Sequence[str]) -> Iterator[pa.RecordBatch]:
    if kind in ("parquet", "parquet-folder"):
        import pyarrow.parquet as pq

        with pq.ParquetFile(f) as pf:
            yield from pf.iter_batches(batch_size=rows, columns=columns)
    elif kind in ("arrow", "datasets-folder"):
        reader = _open_ipc(f)
        if hasattr(reader, "num_record_batches"):  # IPC file format
            gen = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            gen = iter(reader)
        yield from _rebatch((b.select(columns) for b in gen), rows)
    elif kind == "csv":
        import pyarrow.csv as pcsv

        types = {c: pa.string() for c in strings if c in columns}
        reader = pcsv.open_csv(f, convert_options=pcsv.ConvertOptions(include_columns=columns,
                                                                      column_types=types))
        yield from _rebatch(reader, rows)
    else:
        import pyarrow.json as pjson

        yield from _rebatch((b.select(columns) for b in pjson.open_json(f)), rows)
