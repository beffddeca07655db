from django.db import DatabaseError, InterfaceError, OperationalError
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError


def is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be reached, not that a query was wrong."""
    if isinstance(exc, (ConnectionFailure, ServerSelectionTimeoutError)):
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    cause = exc.__cause__
    return isinstance(exc, DatabaseError) and cause is not None and is_database_unavailable(cause)
