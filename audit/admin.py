from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import StaffAccess
from core.admin_filters import BoundedCountPaginator, date_range_filter, input_filter


@admin.register(StaffAccess)
class StaffAccessAdmin(admin.ModelAdmin):
    """Who read which conversation, when: visible to superusers only, and never editable."""

    list_display = ["at", "staff_username", "action", "interaction_id", "interaction_title"]
    list_filter = [
        "action",
        date_range_filter("at", "time"),
        input_filter("staff", "staff (username)", "staff_username"),
        input_filter("interaction", "interaction id", "interaction_id"),
    ]
    ordering = ["-at", "-id"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = BoundedCountPaginator

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
