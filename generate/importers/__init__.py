"""Importers: traces sampled elsewhere (text only) turned into problems and `TraceRecord`s.

`formats` reads the line formats (`generic`, `esc`, `qwen-math`), `table_source` reads any local
table in bounded batches, `table` and `matharena` map a table's rows, `stream` tokenizes rows into
records run by run. Never writes the cache (`dp.cache.import_pipeline` does) and never samples.
"""
