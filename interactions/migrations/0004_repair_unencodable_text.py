"""Repair rows stored before the API refused text that cannot be encoded (issue 10).

Interactions and their messages. Before the parser refused lone surrogates,
`{"metadata": {"k": "\\ud800"}}` was stored on SQLite (the JSON column keeps the escape), and
bytes that are not UTF-8 can reach a text column by other tools (SQLite does not check). Such
a row made the admin's pages fail (and, for bytes that are not UTF-8, the API too). This
replaces each such character with U+FFFD (REPLACEMENT CHARACTER) and changes nothing else:
no other field, no `updated_at`, no `version`. Rows without one are not written.

SQLite only: on MongoDB every string is UTF-8 (BSON), and pymongo refuses a lone surrogate,
so no document can hold one; there the migration does nothing, without touching the server.
The code is frozen here (migrations must not follow later changes of the app's code).
"""

import json
import re
from typing import Any

from django.db import migrations

SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"

TEXT_COLUMNS = {
    "interactions_interaction": ("title", "model_name", "role", "prompt", "metadata"),
    "messages_app_message": ("content", "error_message", "model", "finish_reason", "error_code", "idempotency_key"),
}
JSON_COLUMNS = {"interactions_interaction": ("metadata",)}


def encodable(text: str) -> str:
    return SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def text_from_bytes(value: bytes) -> str:
    """The column's bytes as text: UTF-8, with each lone surrogate (CESU-8, as other tools
    write them) and each byte that is not UTF-8 replaced by U+FFFD."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return encodable(value.decode("utf-8", "surrogatepass"))
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")


def scrubbed(data: Any) -> Any:
    if isinstance(data, str):
        return encodable(data)
    if isinstance(data, dict):
        return {encodable(key): scrubbed(value) for key, value in data.items()}
    if isinstance(data, list):
        return [scrubbed(item) for item in data]
    return data


def repair_sqlite_rows(
    schema_editor: Any, text_columns: dict[str, tuple[str, ...]], json_columns: dict[str, tuple[str, ...]]
) -> int:
    """Repair the columns named, table by table; returns how many values were rewritten."""
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return 0
    connection.ensure_connection()
    raw = connection.connection
    repaired = 0
    previous_factory = raw.text_factory
    raw.text_factory = bytes  # Read what is stored, even bytes that are not UTF-8.
    try:
        for table, columns in text_columns.items():
            for column in columns:
                rows = raw.execute(f'SELECT rowid, "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL').fetchall()
                for rowid, value in rows:
                    if isinstance(value, bytes):
                        text = text_from_bytes(value)
                        if text.encode("utf-8") != value:
                            raw.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?', (text, rowid))
                            repaired += 1
        for table, columns in json_columns.items():
            for column in columns:
                # A lone surrogate in stored JSON is an escape (`\ud800`); valid pairs match too,
                # and are left as they are.
                rows = raw.execute(
                    f'SELECT rowid, "{column}" FROM "{table}" WHERE "{column}" LIKE ?', ("%\\ud%",)
                ).fetchall()
                for rowid, value in rows:
                    data = json.loads(value)
                    clean = scrubbed(data)
                    if clean != data:
                        raw.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?', (json.dumps(clean), rowid))
                        repaired += 1
    finally:
        raw.text_factory = previous_factory
    return repaired


def repair(apps: Any, schema_editor: Any) -> None:
    repair_sqlite_rows(schema_editor, TEXT_COLUMNS, JSON_COLUMNS)


class Migration(migrations.Migration):
    dependencies = [
        ("interactions", "0003_reply_claims"),
        ("messages_app", "0005_reply_claims"),
    ]

    operations = [
        # Not atomic by itself: on SQLite the whole migration runs in one transaction anyway;
        # on MongoDB an atomic block would open a connection for a migration that uses none.
        migrations.RunPython(repair, migrations.RunPython.noop, atomic=False, elidable=True),
    ]
