"""Structured logs: structlog behind the standard library's logging.

Every line, from structlog loggers and from plain `logging` loggers alike (Django, DRF,
our modules), goes through one `ProcessorFormatter`, which merges the request's context
(`request_id`, `user_id`, bound by django-structlog's middleware and ours) into it. The
renderer is chosen by the LOG_FORMAT setting: `json` (one JSON object per line, for log
shippers) or `console` (key=value, for people).

What is logged never includes secrets or message content: the access line names the
route, not the path with its query string, and the reply's lines carry ids, counts and
timings only. Only DEBUG logging may add more.
"""

from typing import Any

import structlog
from django.http import HttpRequest

LOG_FORMATS = ("json", "console")


def request_named_by_its_id(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Django's `django.request` lines ("Not Found: …") pass the request in `extra`, and are
    written after the request's context is cleared: name the request by its id instead of
    rendering the object (its repr holds the path with the query string, where a stream
    ticket may be)."""
    request = event_dict.get("request")
    if isinstance(request, HttpRequest):
        del event_dict["request"]
        event_dict.setdefault("request_id", request.META.get("HTTP_X_REQUEST_ID"))
    return event_dict


# Applied to every record, structlog's and the standard library's ("foreign") alike.
SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    request_named_by_its_id,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING setting: one console handler whose formatter renders `log_format`."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {log_format!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        final.append(structlog.processors.dict_tracebacks)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [*final, renderer],
                "foreign_pre_chain": SHARED_PROCESSORS,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django_redis": {"level": "WARNING"},
            # Our access line (core.middleware.AccessLogMiddleware) replaces Django's dev
            # server lines and django-structlog's request_started/finished (logged at DEBUG).
            "django.server": {"level": "WARNING"},
        },
    }


def structlog_configure() -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
