#!/usr/bin/env python3
"""Renders schema.sql.in into migrations/postgres and migrations/sqlite.

The two histories are kept as separate, committed files (sqlx embeds them); this script only
writes the first migration of each so the two schemas start out identical. Later migrations are
written by hand per backend.
"""
import pathlib
import re

HERE = pathlib.Path(__file__).parent
TYPES = {
    "postgres": {"@IDTEXT": r"(\1)::text", "@ID": "UUID", "@TS": "TIMESTAMPTZ", "@JSON": "JSONB", "@INT": "BIGINT"},
    "sqlite": {"@IDTEXT": r"\1", "@ID": "TEXT", "@TS": "TEXT", "@JSON": "TEXT", "@INT": "INTEGER"},
}
source = (HERE / "schema.sql.in").read_text()
for backend, types in TYPES.items():
    text = re.sub(r"@IDTEXT\((\w+)\)", types["@IDTEXT"], source)
    for token in ("@ID", "@TS", "@JSON", "@INT"):
        text = text.replace(token, types[token])
    header = f"-- Generated from migrations/schema.sql.in by migrations/render.py ({backend}).\n"
    (HERE / backend / "0001_initial.sql").write_text(header + text)
