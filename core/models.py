from uuid6 import uuid7


def new_id():  # type: ignore[no-untyped-def]
    """Time-ordered UUIDv7: ids sort in creation order, which keeps list tie-breaks intuitive."""
    return uuid7()
