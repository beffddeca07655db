"""The MongoDB client options production runs with, as pymongo itself reads them.

Production (and docker-compose.yml) runs MongoDB as a replica set. The settings give the
backend's MongoClient: w=majority with a bounded wait, retryable writes and reads, read
preference primary and short timeouts; an option written in MONGODB_URI's query string wins.
Each check starts Django with MONGODB_URI set (on a closed port) in a child process, takes the
connection parameters the backend would use, and builds the MongoClient from them without
connecting, so what is asserted is what pymongo would do, not what the settings file says.
"""

from typing import Any

import pytest

from tests.mongo_contract import mongodb_env, run_django

CLIENT_SCRIPT = """
from pymongo import MongoClient

params = connection.get_connection_params()
client = MongoClient(**params, connect=False)
options = client.options
emit({
    "write_concern": client.write_concern.document,
    "read_preference": client.read_preference.mongos_mode,
    "read_concern": client.read_concern.document,
    "retry_writes": options.retry_writes,
    "retry_reads": options.retry_reads,
    "server_selection_timeout": options.server_selection_timeout,
    "connect_timeout": options.pool_options.connect_timeout,
    "socket_timeout": options.pool_options.socket_timeout,
    "replica_set": options.replica_set_name,
})
client.close()
"""


def client_options(**variables: str) -> dict[str, Any]:
    return run_django(CLIENT_SCRIPT, mongodb_env(**variables))


@pytest.fixture(scope="module")
def defaults() -> dict[str, Any]:
    env = mongodb_env()
    uri = env["MONGODB_URI"]
    return client_options(MONGODB_URI=f"{uri}?replicaSet=rs0", MONGODB_WRITE_TIMEOUT_MS="4000")


def test_writes_wait_for_a_majority_of_the_replica_set_for_a_bounded_time(defaults):
    # Messages, replies and reply-slot claims all go through this one client.
    assert defaults["write_concern"] == {"w": "majority", "wtimeout": 4000}


def test_writes_and_reads_are_retried_once_across_a_failover(defaults):
    assert defaults["retry_writes"] is True
    assert defaults["retry_reads"] is True


def test_reads_go_to_the_primary_so_the_service_reads_its_own_writes(defaults):
    assert defaults["read_preference"] == "primary"
    assert defaults["read_concern"] == {}, "the server's default read concern (local)"


def test_an_unreachable_replica_set_is_given_up_on_within_the_configured_timeouts(defaults):
    # mongodb_env() sets 500 ms server selection and 2 s socket timeouts.
    assert defaults["server_selection_timeout"] == 0.5
    assert defaults["connect_timeout"] == 0.5
    assert defaults["socket_timeout"] == 2.0
    assert defaults["replica_set"] == "rs0"


def test_options_written_in_mongodb_uri_win_over_the_settings_defaults():
    uri = mongodb_env()["MONGODB_URI"]

    given = client_options(
        MONGODB_URI=f"{uri}?w=1&readPreference=secondaryPreferred&retryWrites=false&socketTimeoutMS=7000"
    )

    assert given["write_concern"] == {"w": 1, "wtimeout": 5000}
    assert given["read_preference"] == "secondaryPreferred"
    assert given["retry_writes"] is False
    assert given["retry_reads"] is True
    assert given["socket_timeout"] == 7.0
    assert given["server_selection_timeout"] == 0.5
