"""django-axes (failed-login lockouts) under MONGODB_URI, proven without a MongoDB server.

As in tests/test_mongodb_contract.py, a child Python starts Django with MONGODB_URI pointing at
a closed port, and django-mongodb-backend compiles everything for real up to the point where it
hands a command to pymongo, where the command is recorded instead. What this proves:

- axes gets ObjectId primary keys and its migrations from mongo_migrations/axes, like the
  contrib apps, and those migrations match its models;
- its admin pages (where staff unlock a user) render: axes' own admin has a date hierarchy,
  which lists dates with QuerySet.datetimes(), outside what the project uses on MongoDB (the
  backend's documented limitations; CONVENTIONS.md); core/admin.py registers them without it;
- a failed login is recorded (look-up, insert, then the update of a repeated failure with
  Concat and F) with commands the backend can build.
"""

from typing import Any

import pytest
from bson import ObjectId

from tests.mongo_contract import RECORDER, migrations_recorded, mongodb_env, run_django

RECORDING = (
    RECORDER
    + """
from django.contrib import admin
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.test import RequestFactory
from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog

# axes deletes expired attempts inside transaction.atomic(), which asks the connection whether
# it autocommits (the backend has no transactions, so atomic() does nothing more): say it does.
connection.ensure_connection = lambda: None
connection.autocommit = True
"""
)

ADMIN_SCRIPT = (
    RECORDING
    + """
staff = User(username="root", is_staff=True, is_superuser=True, is_active=True)

def changelist(model_admin, **query):
    request = RequestFactory().get("/admin/axes/", query)
    request.user = staff
    recorded.clear()
    try:
        response = model_admin.changelist_view(request)
        response.render()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"status": response.status_code, "commands": list(recorded)}

models = (AccessAttempt, AccessLog, AccessFailureLog)
registered = {model._meta.model_name: admin.site._registry[model] for model in models}
emit({
    "pages": {name: changelist(model_admin) for name, model_admin in registered.items()},
    "date_hierarchies": {name: model_admin.date_hierarchy for name, model_admin in registered.items()},
    "admin_classes": {name: type(model_admin).__module__ for name, model_admin in registered.items()},
    # Staff following axes' own date hierarchy into a year: it lists the months with datetimes().
    "axes_own_admin_in_a_year": changelist(AccessAttemptAdmin(AccessAttempt, admin.site), attempt_time__year="2025"),
})
"""
)

FAILED_LOGIN_SCRIPT = (
    RECORDING
    + """
from datetime import UTC, datetime
from bson import ObjectId

def failed_login():
    request = RequestFactory().post("/api/v1/auth/token/", REMOTE_ADDR="203.0.113.9")
    assert authenticate(request, username="alice", password="wrong") is None

first = commands_of(failed_login)

# A second failure finds the attempt stored by the first and updates it.
stored_attempt = {
    "_id": ObjectId(PARAMS["attempt_id"]),
    "user_agent": "<unknown>",
    "ip_address": "203.0.113.9",
    "username": "alice",
    "http_accept": "<unknown>",
    "path_info": "/api/v1/auth/token/",
    "attempt_time": datetime.now(UTC).replace(tzinfo=None),
    "get_data": "",
    "post_data": "",
    "failures_since_start": 1,
}
canned_matches.append((lambda collection, pipeline: collection == "axes_accessattempt"
               and any("$limit" in stage for stage in pipeline), [stored_attempt]))
repeated = commands_of(failed_login)
emit({"first": first, "repeated": repeated})
"""
)

ATTEMPT_ID = "65a0000000000000000000aa"


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    return migrations_recorded()


@pytest.fixture(scope="module")
def admin_pages() -> dict[str, Any]:
    return run_django(ADMIN_SCRIPT, mongodb_env())


@pytest.fixture(scope="module")
def failed_logins() -> dict[str, Any]:
    return run_django(FAILED_LOGIN_SCRIPT, mongodb_env(), attempt_id=ATTEMPT_ID)


def test_axes_migrations_come_from_mongo_migrations_with_object_id_keys_and_match_its_models(migrations):
    assert "axes" not in migrations["changes"], "makemigrations would write axes migrations under MongoDB settings"
    assert migrations["leaves"]["axes"].startswith("mongo_migrations.axes.")
    for model in ("axes.accessattempt", "axes.accesslog", "axes.accessfailurelog", "axes.accessattemptexpiration"):
        key_type, column = migrations["primary_keys"][model]
        assert (key_type, column) in {("ObjectIdAutoField", "_id"), ("OneToOneField", "access_attempt_id")}, model
    assert migrations["primary_keys"]["axes.accessattempt"] == ["ObjectIdAutoField", "_id"]
    created = {op["collection"] for op in migrations["schema_operations"] if op["op"] == "create_collection"}
    assert {"axes_accessattempt", "axes_accesslog", "axes_accessfailurelog"} <= created


def test_axes_own_admin_lists_dates_with_datetimes_which_the_project_does_not_use_on_mongodb(admin_pages):
    # Why core/admin.py replaces it: axes' date hierarchy groups by truncated dates (QuerySet.datetimes()).
    # This backend version compiles that to $dateTrunc, but the project keeps to what its
    # documented limitations allow (CONVENTIONS: no dates()/datetimes(), no admin date_hierarchy).
    assert "$dateTrunc" in str(admin_pages["axes_own_admin_in_a_year"]["commands"])


def test_the_lockout_admin_pages_render_on_mongodb_without_a_date_hierarchy(admin_pages):
    for name, page in admin_pages["pages"].items():
        assert page["status"] == 200, name
        assert page["commands"], name
        assert "$dateTrunc" not in str(page["commands"]), name
        assert admin_pages["date_hierarchies"][name] is None
        assert admin_pages["admin_classes"][name] == "core.admin"


def test_a_failed_login_is_looked_up_and_stored_with_commands_the_backend_builds(failed_logins):
    inserts = [c for c in failed_logins["first"] if c["op"] == "insert_many"]

    assert [c["collection"] for c in inserts] == ["axes_accessattempt"]
    (document,) = inserts[0]["documents"]
    assert (document["username"], document["ip_address"], document["failures_since_start"]) == (
        "alice",
        "203.0.113.9",
        1,
    )


def test_a_repeated_failed_login_counts_up_the_stored_attempt_in_one_update(failed_logins):
    updates = [c for c in failed_logins["repeated"] if c["op"] == "update_many"]

    (update,) = [c for c in updates if c["collection"] == "axes_accessattempt"]
    assert update["filter"] == {"_id": ObjectId(ATTEMPT_ID)}
    (stage,) = update["update"]
    assert stage["$set"]["failures_since_start"] == {"$add": ["$failures_since_start", {"$literal": 1}]}
    assert "$concat" in str(stage["$set"]["get_data"])
    assert not [
        c for c in failed_logins["repeated"] if c["op"] == "insert_many" and c["collection"] == "axes_accessattempt"
    ]


def test_none_of_this_connected_to_a_server(migrations, admin_pages, failed_logins):
    assert not migrations["connected"]
    assert not admin_pages["connected"]
    assert not failed_logins["connected"]
