from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from core.admin_filters import BoundedCountPaginator, date_range_filter, input_filter
from usage.models import UsageBucket
from usage.selectors import usage_totals, usage_totals_by_model


@admin.register(UsageBucket)
class UsageBucketAdmin(admin.ModelAdmin):
    """Who spends how much, per day and model, with the totals of the chosen period.

    Reads only the daily buckets (never the messages); the totals are one aggregate over
    the buckets the filters select. Read-only: buckets are written by usage_record().
    """

    list_display = [
        "day",
        "user",
        "model",
        "user_messages",
        "replies_completed",
        "replies_incomplete",
        "replies_failed",
        "replies_abandoned",
        "prompt_tokens",
        "completion_tokens",
    ]
    list_filter = [
        date_range_filter("day", "day", is_date_field=True),
        input_filter("username", "user (username)", "user__username"),
        input_filter("model", "model", "model"),
    ]
    ordering = ["-day", "user"]
    list_select_related = ["user"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = BoundedCountPaginator

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            buckets = context["cl"].queryset
            context["usage_totals"] = usage_totals(buckets=buckets)
            context["usage_totals_by_model"] = usage_totals_by_model(buckets=buckets)
        return response
