"""What the MongoDB contract tests share (tests/test_mongodb_contract*.py).

No MongoDB server runs where the tests run, and the MongoDB settings must be active when
Django starts, so each check runs a child Python with MONGODB_URI pointing at a closed port
(run_django). In the children that compile queries, Django and the backend do all their
work for real up to the point where the backend hands a finished command to pymongo: the
methods that do that record the command instead (RECORDER, prepended to such a script).
The helpers below model what MongoDB would do with a recorded command (matches,
apply_update) and what an index created by the migrations serves.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from textwrap import dedent
from typing import Any

from bson import ObjectId, json_util

from tests.conftest import ROOT, free_port

OBJECT_ID_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
OWNER_ID = "65a000000000000000000001"
INTERACTION_ID = "0190f0e0-0000-7000-8000-000000000001"
ANCHOR_ID = "0190f0e0-0001-7000-8000-000000000002"
ANCHOR_CREATED_AT = datetime(2025, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


# --- Running Django in a child process -------------------------------------------------


def child_env(**variables: str) -> dict[str, str]:
    """This environment without the developer's database, cache and provider settings, plus `variables`."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "MONGODB_", "OPENAI_", "LLM_", "DATABASE_URL", "REDIS_URL"))
    }
    return {
        **inherited,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "LLM_PROVIDER": "offline",
        # Set, even empty, so that a developer's .env cannot fill them in.
        "MONGODB_URI": "",
        "REDIS_URL": "",
        # The tests' key (pyproject.toml): without DEBUG the settings refuse to start without one.
        "DJANGO_SECRET_KEY": os.environ["DJANGO_SECRET_KEY"],
        **variables,
    }


def mongodb_env(**variables: str) -> dict[str, str]:
    return child_env(
        **{
            "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/chat",
            "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "500",
            "MONGODB_SOCKET_TIMEOUT_MS": "2000",
            # Ignored while MONGODB_URI is set; here to prove that MongoDB wins.
            "DATABASE_URL": "sqlite:////nonexistent/never-used.sqlite3",
            **variables,
        }
    )


# Dates decode as aware UTC datetimes, as Django hands them to the backend.
AWARE_JSON = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)

CHILD_SETUP = """
import json, sys
import django
django.setup()
from bson import json_util
from django.db import connection
PARAMS = json.loads(sys.argv[1])

def emit(result):
    print(json_util.dumps({**result, "connected": connection.connection is not None}))
"""


def run_django(script: str, env: dict[str, str], **params: Any) -> Any:
    """Run `script` in a child Python with Django set up; return what it emit()ed, as BSON values."""
    completed = subprocess.run(
        [sys.executable, "-", json.dumps(params)],
        input=CHILD_SETUP + dedent(script),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"child failed:\n{completed.stderr}"
    return json_util.loads(completed.stdout.strip().splitlines()[-1], json_options=AWARE_JSON)


# --- What MongoDB would do with a command (the operators the backend emits for us) -------

MISSING = object()
COMPARISONS = {
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
}
BSON_TYPES = {"string": str, "objectId": ObjectId}


def matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether the MongoDB query filter `query` selects `document`."""
    return all(_clause_matches(document, key, condition) for key, condition in query.items())


def _clause_matches(document: dict[str, Any], key: str, condition: Any) -> bool:
    if key == "$and":
        return all(matches(document, part) for part in condition)
    if key == "$or":
        return any(matches(document, part) for part in condition)
    if key == "$nor":
        return not any(matches(document, part) for part in condition)
    value = document.get(key, MISSING)
    if isinstance(condition, dict) and condition and all(name.startswith("$") for name in condition):
        return all(_operator_matches(value, name, argument) for name, argument in condition.items())
    return _equals(value, condition)


def _equals(value: Any, expected: Any) -> bool:
    if expected is None:  # {field: null} also selects documents without the field.
        return value is MISSING or value is None
    return value is not MISSING and value == expected


def _operator_matches(value: Any, operator: str, argument: Any) -> bool:
    if operator == "$exists":
        return (value is not MISSING) is bool(argument)
    if operator == "$ne":
        return not _equals(value, argument)
    if operator == "$in":
        return any(_equals(value, candidate) for candidate in argument)
    if operator == "$type":
        return isinstance(value, BSON_TYPES[argument])
    if operator == "$in":
        return any(_equals(value, item) for item in argument)
    if operator in COMPARISONS:  # MongoDB compares only values of the same type.
        return type(value) is type(argument) and COMPARISONS[operator](value, argument)
    raise AssertionError(f"the backend emitted {operator}, which this test does not model")


def evaluate(expression: Any, document: dict[str, Any]) -> Any:
    """An aggregation expression as an update pipeline evaluates it against the stored document."""
    if isinstance(expression, str) and expression.startswith("$"):
        return document[expression[1:]]
    if isinstance(expression, dict) and len(expression) == 1:
        ((operator, argument),) = expression.items()
        if operator == "$literal":
            return argument
        if operator == "$add":
            return sum(evaluate(term, document) for term in argument)
        if operator == "$subtract":
            minuend, subtrahend = argument
            return evaluate(minuend, document) - evaluate(subtrahend, document)
    raise AssertionError(f"the backend emitted {expression!r}, which this test does not model")


def apply_update(document: dict[str, Any], pipeline: list[dict[str, Any]]) -> dict[str, Any]:
    for stage in pipeline:
        ((name, fields),) = stage.items()
        assert name == "$set", f"unexpected update stage {name}"
        document = {**document, **{field: evaluate(value, document) for field, value in fields.items()}}
    return document


def stage_names(pipeline: list[dict[str, Any]]) -> list[str]:
    return [next(iter(stage)) for stage in pipeline]


def stage(pipeline: list[dict[str, Any]], name: str) -> Any:
    return next(step[name] for step in pipeline if name in step)


def equality_conditions(match: dict[str, Any]) -> dict[str, Any]:
    """The `field: value` conditions that every matched document must satisfy."""
    clauses = match["$and"] if set(match) == {"$and"} else [match]
    return {
        field: value
        for clause in clauses
        for field, value in clause.items()
        if not field.startswith("$") and not isinstance(value, dict)
    }


def index_serves_sort(index_key: dict[str, int], equality_fields: list[str], sort: dict[str, int]) -> bool:
    """Whether equality on `equality_fields` then `sort` walks the index in order (forwards or backwards)."""
    fields = list(index_key)
    if fields[: len(equality_fields)] != equality_fields:
        return False
    if fields[len(equality_fields) : len(equality_fields) + len(sort)] != list(sort):
        return False
    return len({index_key[field] * direction for field, direction in sort.items()}) == 1


def only_sort_fields_reassigned_to_themselves(stages: list[dict[str, Any]]) -> bool:
    return all(
        set(step) == {"$addFields"} and all(value == f"${field}" for field, value in step["$addFields"].items())
        for step in stages
    )


# --- Migrations ----------------------------------------------------------------------------

MIGRATIONS_SCRIPT = """
from django.apps import apps
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

# Without a connection the loader reads the migration files only, not the applied history.
loader = MigrationLoader(None, ignore_no_migrations=True)
loader.graph.validate_consistency()
changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(graph=loader.graph)

# Apply every migration's schema operations as `migrate` does, recording what the schema
# editor would send to MongoDB.
schema_operations = []

class RecordingCollection:
    def __init__(self, name):
        self.name = name

    def create_collection(self, name):
        schema_operations.append({"op": "create_collection", "collection": name})

    def create_indexes(self, indexes):
        for index in indexes:
            schema_operations.append({"op": "create_index", "collection": self.name, **index.document})

    def update_many(self, filter, update):
        schema_operations.append({"op": "update_many", "collection": self.name, "filter": filter, "update": update})

connection.SchemaEditorClass.get_collection = lambda self, name: RecordingCollection(name)
connection.SchemaEditorClass.get_database = lambda self: RecordingCollection(None)
plan = []
for leaf in loader.graph.leaf_nodes():
    plan += [key for key in loader.graph.forwards_plan(leaf) if key not in plan]
state = ProjectState(real_apps=loader.unmigrated_apps)
editor = connection.schema_editor()
for key in plan:
    state = loader.graph.nodes[key].apply(state, editor)

emit({
    "changes": {label: [str(migration) for migration in found] for label, found in changes.items()},
    "leaves": {label: loader.graph.nodes[(label, name)].__module__ for label, name in loader.graph.leaf_nodes()},
    "apps_with_models": sorted({model._meta.app_label for model in apps.get_models()}),
    "primary_keys": {
        model._meta.label_lower: [type(model._meta.pk).__name__, model._meta.pk.column]
        for model in state.apps.get_models()
    },
    "schema_operations": schema_operations,
})
"""


def created_indexes(migrations: dict[str, Any], collection: str) -> dict[str, dict[str, Any]]:
    return {
        operation["name"]: operation
        for operation in migrations["schema_operations"]
        if operation["op"] == "create_index" and operation["collection"] == collection
    }


def uuid_hex(value: str) -> str:
    return value.replace("-", "")


# --- Recording the commands the backend would send ---------------------------------------

RECORDER = """
from django_mongodb_backend.compiler import SQLInsertCompiler, SQLUpdateCompiler
from django_mongodb_backend.query import MongoQuery, wrap_database_errors
from pymongo.errors import DuplicateKeyError

# The backend hands every finished command to pymongo in one of these methods; here they
# record it and answer from what the script canned.
recorded = []
canned_results = []  # what the next reads find: one list of documents per read, in order
canned_matches = []  # (predicate(collection, pipeline), documents): what every matching read finds
update_results = []  # how many documents the next updates match (1 once none is left)
insert_failures = []  # whether each next insert is refused by a unique index
delete_results = []  # how many documents the next deletes remove (1 once none is left)

class Cursor:
    # What pymongo's command cursor gives the backend: iteration and next().
    def __init__(self, documents):
        self.documents = iter(documents)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.documents)

    next = __next__

def record_aggregate(self):
    collection, pipeline = self.compiler.collection_name, self.get_pipeline()
    recorded.append({"op": "aggregate", "collection": collection, "pipeline": pipeline})
    for wanted, documents in canned_matches:
        if wanted(collection, pipeline):
            return Cursor(documents)
    return Cursor(canned_results.pop(0) if canned_results else [])

def record_update(self, criteria, pipeline):
    recorded.append({"op": "update_many", "collection": self.collection_name, "filter": criteria, "update": pipeline})
    return update_results.pop(0) if update_results else 1

def record_insert(self, documents, returning_fields=None):
    recorded.append({"op": "insert_many", "collection": self.collection_name, "documents": documents})
    if insert_failures and insert_failures.pop(0):
        raise DuplicateKeyError("E11000 duplicate key error")
    return [(None,)] * len(documents) if returning_fields else []

def record_delete(self):
    recorded.append({"op": "delete_many", "collection": self.compiler.collection_name, "filter": self.match_mql})
    return delete_results.pop(0) if delete_results else 1

MongoQuery.get_cursor = record_aggregate
MongoQuery.delete = record_delete
SQLUpdateCompiler.update = record_update
SQLInsertCompiler.insert = wrap_database_errors(record_insert)

def commands_of(step, *results):
    # The commands `step` sends; its reads find `results` (one list of documents each), in order.
    recorded.clear()
    canned_results[:] = list(results)
    step()
    return list(recorded)
"""


def migrations_recorded() -> dict[str, Any]:
    """What `migrate` would send under MongoDB settings (MIGRATIONS_SCRIPT's report)."""
    return run_django(MIGRATIONS_SCRIPT, mongodb_env())
