"""Admin list filters that cost the same on a table of any size, on SQLite and MongoDB.

Django's stock filters for a free-form field list every distinct value of the column (a
scan of the whole table on every page view), and `date_hierarchy` needs `dates()`, which
django-mongodb-backend does not support. These filters take what staff type instead:
an exact value, or a range of days, and turn it into one indexable condition.
"""

import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property


def _hidden_fields(changelist: Any, remove: list[str]) -> list[tuple[str, str]]:
    """The changelist's other parameters, kept when a filter's form is submitted."""
    query = changelist.get_query_string(remove=[*remove, "p"])
    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


class InputFilter(admin.SimpleListFilter):
    """A text box: rows whose field equals what staff typed (`lookup`, exact by default)."""

    template = "admin/input_filter.html"
    lookup = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # One placeholder choice, so that the admin shows the filter at all.
        return [("", "")]

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        yield {
            "value": self.value() or "",
            "hidden": _hidden_fields(changelist, [str(self.parameter_name)]),
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
            "selected": self.value() is not None,
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        return queryset.filter(**{self.lookup: value})


class DateRangeFilter(admin.ListFilter):
    """From and to days (inclusive, UTC) on a date or datetime field, with presets."""

    template = "admin/date_range_filter.html"
    field_name = ""
    is_date_field = False
    PRESETS = (("Today", 0), ("Past 7 days", 6), ("Past 30 days", 29))

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: type[Model], model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.expected_parameters():
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value

    @property
    def from_parameter(self) -> str:
        return f"{self.field_name}_from"

    @property
    def to_parameter(self) -> str:
        return f"{self.field_name}_to"

    def expected_parameters(self) -> list[str | None]:
        return [self.from_parameter, self.to_parameter]

    def has_output(self) -> bool:
        return True

    def _day(self, name: str) -> date | None:
        value = str(self.used_parameters.get(name) or "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise IncorrectLookupParameters(f"{name}: expected a day as YYYY-MM-DD") from exc

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        today = timezone.now().date()
        parameters = [self.from_parameter, self.to_parameter]
        yield {
            "from_name": self.from_parameter,
            "to_name": self.to_parameter,
            "from_value": self.used_parameters.get(self.from_parameter, ""),
            "to_value": self.used_parameters.get(self.to_parameter, ""),
            "hidden": _hidden_fields(changelist, parameters),
            "clear_url": changelist.get_query_string(remove=parameters),
            "selected": bool(self.used_parameters),
            "presets": [
                (
                    label,
                    changelist.get_query_string(
                        {self.from_parameter: (today - timedelta(days=days)).isoformat(), self.to_parameter: ""},
                        remove=["p"],
                    ),
                )
                for label, days in self.PRESETS
            ],
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        start, end = self._day(self.from_parameter), self._day(self.to_parameter)
        if self.is_date_field:
            if start:
                queryset = queryset.filter(**{f"{self.field_name}__gte": start})
            if end:
                queryset = queryset.filter(**{f"{self.field_name}__lte": end})
            return queryset
        if start:
            queryset = queryset.filter(**{f"{self.field_name}__gte": _start_of(start)})
        if end:
            queryset = queryset.filter(**{f"{self.field_name}__lt": _start_of(end + timedelta(days=1))})
        return queryset


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def date_range_filter(field_name: str, title: str, *, is_date_field: bool = False) -> type[DateRangeFilter]:
    return type(
        f"{field_name.title().replace('_', '')}RangeFilter",
        (DateRangeFilter,),
        {"field_name": field_name, "title": title, "is_date_field": is_date_field},
    )


def input_filter(parameter_name: str, title: str, lookup: str) -> type[InputFilter]:
    return type(
        f"{parameter_name.title().replace('_', '')}InputFilter",
        (InputFilter,),
        {"parameter_name": parameter_name, "title": title, "lookup": lookup},
    )


class BoundedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT rows (one bounded query), so that a changelist over a
    large table never counts all of it; past the limit, the last pages are not offered."""

    COUNT_LIMIT = 10_000

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet[Any], self.object_list)
        return int(rows[: self.COUNT_LIMIT].count())


def uuid_or_none(term: str) -> uuid.UUID | None:
    """`term` as an id if it is one (a search for an id is an index seek, not a text scan)."""
    try:
        return uuid.UUID(term)
    except ValueError:
        return None
