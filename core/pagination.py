"""Keyset pagination in the OpenAI list convention.

Query: `limit` (default 20, at most 100), `order` (`asc` or `desc`), `after` and/or `before`
(the id of an object in the list; both: the objects between them; an id not in the list: 404). Response:
`{"object": "list", "data": [...], "first_id", "last_id", "has_more"}`.

The list is ordered by (sort field, id), so objects created in the same instant keep a
stable order, and `after=<the last id I have>` with `order=asc` polls for newer objects.
"""

import uuid
from typing import Any

from django.db.models import Model, Q, QuerySet
from rest_framework import serializers
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import NotFound

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ListParamsSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    after = serializers.UUIDField(required=False)
    before = serializers.UUIDField(required=False)


def list_params_key(request: Request) -> str:
    """The list parameters of `request`, validated, in one canonical spelling (for cache keys and ETags).

    Two requests for the same page get the same key however their query strings are spelled
    (order of parameters, defaults left out, unknown ones); invalid parameters answer 400.
    """
    params = ListParamsSerializer(data=request.query_params.dict())
    params.is_valid(raise_exception=True)
    return "&".join(f"{name}={params.validated_data[name]}" for name in sorted(params.validated_data))


def keyset_filter(sort_field: str, value: Any, pk: Any, *, forward: bool) -> Q:
    """The rows after (sort value, pk) in the walking direction.

    The tie-break alone, `sort > v OR (sort = v AND pk > p)`, is an OR that neither SQLite
    nor MongoDB turns into a range: they read every row of the list from its start and
    filter (an `after=` poll on 100,000 messages read them all). The same condition
    behind a plain `sort >= v` bound starts the index scan at v, so a page costs the same
    however long the list.
    """
    op = "gt" if forward else "lt"
    bound = Q(**{f"{sort_field}__{op}e": value})
    return bound & (Q(**{f"{sort_field}__{op}": value}) | Q(**{sort_field: value, f"pk__{op}": pk}))


class ListPagination(BasePagination):
    """Views set `list_sort_field` (a model field) and `list_default_order`."""

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> list[Any]:
        # A plain dict, so that an empty `?after=` is validated (and refused) rather than
        # taken for an absent parameter, as DRF does with form-style input.
        params = ListParamsSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        limit: int = params.validated_data["limit"]
        sort_field: str = view.list_sort_field
        order: str = params.validated_data.get("order") or view.list_default_order
        after: uuid.UUID | None = params.validated_data.get("after")
        before: uuid.UUID | None = params.validated_data.get("before")

        ascending = order == "asc"
        # Anchors are looked up in the whole list, before any keyset bound is applied.
        after_anchor = self._anchor(queryset, sort_field, after, param="after") if after else None
        before_anchor = self._anchor(queryset, sort_field, before, param="before") if before else None
        if after_anchor is not None:
            queryset = queryset.filter(
                keyset_filter(sort_field, after_anchor[sort_field], after_anchor["pk"], forward=ascending)
            )
        if before_anchor is not None:
            queryset = queryset.filter(
                keyset_filter(sort_field, before_anchor[sort_field], before_anchor["pk"], forward=not ascending)
            )
        # `before` alone walks the list backwards from its cursor (and is flipped back below);
        # with `after` too, the page is the window between the two, walked from `after`.
        backwards = before_anchor is not None and after_anchor is None
        walk_ascending = ascending != backwards
        prefix = "" if walk_ascending else "-"
        rows: list[Model] = list(queryset.order_by(f"{prefix}{sort_field}", f"{prefix}pk")[: limit + 1])
        self.has_more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        return rows

    @staticmethod
    def _anchor(queryset: QuerySet[Any], sort_field: str, cursor: uuid.UUID, *, param: str) -> dict[str, Any]:
        anchor: dict[str, Any] | None = queryset.filter(pk=cursor).values(sort_field, "pk").first()
        if anchor is None:
            raise NotFound(f"No object with id {cursor} in this list.", param=param)
        return anchor

    def get_paginated_response(self, data: Any) -> Response:
        return Response(self.page_body(data))

    def page_body(self, data: Any) -> dict[str, Any]:
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": self.has_more,
        }

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["object", "data", "first_id", "last_id", "has_more"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": schema,
                # OpenAPI 3.1 (JSON Schema 2020-12) has no `nullable`: an empty list's ids are null.
                "first_id": {"type": ["string", "null"], "format": "uuid"},
                "last_id": {"type": ["string", "null"], "format": "uuid"},
                "has_more": {"type": "boolean"},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
            return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

        uuid_schema = {"type": "string", "format": "uuid"}
        return [
            query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                "How many objects to return.",
            ),
            query(
                "order",
                {"type": "string", "enum": ["asc", "desc"], "default": view.list_default_order},
                "Sort order by time.",
            ),
            query("after", uuid_schema, "Return objects that come after this id in the chosen order."),
            query("before", uuid_schema, "Return objects that come before this id in the chosen order."),
        ]
