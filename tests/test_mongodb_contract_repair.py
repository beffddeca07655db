"""The repair of unencodable text (interactions/migrations/0004_repair_unencodable_text.py)
under django-mongodb-backend: a no-op that never touches the server (a BSON string is UTF-8
and pymongo refuses a lone surrogate, so no document holds what it repairs). Same method as
tests/mongo_contract.py; its MIGRATIONS_SCRIPT applies this migration with the others.
"""

from typing import Any

import pytest

from tests.mongo_contract import mongodb_env, run_django

REPAIR_SCRIPT = """
import importlib
from types import SimpleNamespace

from django.apps import apps

repair = importlib.import_module("interactions.migrations.0004_repair_unencodable_text")
repaired = repair.repair_sqlite_rows(
    SimpleNamespace(connection=connection), repair.TEXT_COLUMNS, repair.JSON_COLUMNS
)
repair.repair(apps, SimpleNamespace(connection=connection))
emit({"repaired": repaired, "vendor": connection.vendor})
"""


@pytest.fixture(scope="module")
def outcome() -> dict[str, Any]:
    return run_django(REPAIR_SCRIPT, mongodb_env())


def test_the_repair_migration_does_nothing_on_mongodb_and_never_connects(outcome):
    assert outcome["vendor"] == "mongodb"
    assert outcome["repaired"] == 0
    assert not outcome["connected"]
