from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString

from audit.models import StaffAccessAction
from audit.services import staff_access_record
from core.admin_filters import BoundedCountPaginator, date_range_filter, input_filter, uuid_or_none
from interactions.models import Interaction
from interactions.services import interaction_delete, interaction_update
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.renderers import ExportJSONRenderer, ExportMarkdownRenderer, ExportRenderer
from messages_app.selectors import message_latest

# How many rows a search or a filter reads before it stops: the messages that contain the
# words (newest first), the users whose names match, the most recent failed replies.
CONTENT_SEARCH_LIMIT = 1_000
OWNER_SEARCH_LIMIT = 1_000
PROBLEM_REPLIES_LIMIT = 10_000


class ReplyProblemFilter(admin.SimpleListFilter):
    """Interactions with a failed or incomplete reply among the latest PROBLEM_REPLIES_LIMIT.

    Two index walks, on SQLite and MongoDB alike: the most recent replies with that status
    (the (status, created_at, id) index), then the interactions by id. Never a scan of every
    interaction, nor a join per interaction (a subquery becomes both on MongoDB).
    """

    title = "replies"
    parameter_name = "replies"
    STATUSES = {
        "failed": [MessageStatus.FAILED],
        "incomplete": [MessageStatus.INCOMPLETE],
        "problem": [MessageStatus.FAILED, MessageStatus.INCOMPLETE],
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("problem", "failed or incomplete"), ("failed", "failed"), ("incomplete", "incomplete")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Interaction]) -> QuerySet[Interaction]:
        statuses = self.STATUSES.get(self.value() or "")
        if statuses is None:
            return queryset
        recent = (
            Message.objects.filter(role=MessageRole.ASSISTANT, **_status_condition(statuses))
            .order_by("-created_at", "-id")
            .values_list("interaction_id", flat=True)[:PROBLEM_REPLIES_LIMIT]
        )
        return queryset.filter(pk__in=set(recent))


def _status_condition(statuses: Sequence[str]) -> dict[str, Any]:
    # An equality when there is one status, so that the index on (status, created_at, id)
    # also serves the sort.
    return {"status": statuses[0]} if len(statuses) == 1 else {"status__in": statuses}


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    """Staff find conversations, read them as transcripts, export them, and may change an
    interaction's settings or delete it.

    The change page shows the latest ADMIN_TRANSCRIPT_MESSAGES messages and links to the
    rest, so it costs the same at 100,000 messages as at 100. Opening it (and exporting)
    is recorded for superusers to see (audit.StaffAccess).

    Writes go through the services, as the API's do, so that they bump `version` and
    invalidate the cached pages: an admin edit is never hidden behind a stale cache.
    Interactions are created only through the API.
    """

    list_display = ["__str__", "owner", "model_name", "message_count", "last_activity_at", "created_at"]
    list_filter = [
        ReplyProblemFilter,
        input_filter("owner", "owner (username)", "owner__username"),
        date_range_filter("last_activity_at", "last activity"),
        input_filter("model", "model", "model_name"),
    ]
    search_fields = ["title", "owner__username"]
    search_help_text = (
        "Title, owner's username, or words in the messages (the newest 1,000 messages that contain them); "
        "or the id of an interaction or of one of its messages."
    )
    ordering = ["-last_activity_at", "-id"]
    list_select_related = ["owner"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = BoundedCountPaginator
    actions = ["export_json", "export_markdown"]
    fieldsets = [
        (None, {"fields": ["title", "owner", "model_name", "role", "prompt", "temperature", "max_tokens", "metadata"]}),
        ("Transcript", {"fields": ["transcript"]}),
        (
            "Record",
            {
                "classes": ["collapse"],
                "fields": [
                    "id",
                    "message_count",
                    "last_message_at",
                    "last_activity_at",
                    "reply_claimed_at",
                    "version",
                    "created_at",
                    "updated_at",
                ],
            },
        ),
    ]
    readonly_fields = [
        "id",
        "owner",
        "transcript",
        "reply_claimed_at",
        "message_count",
        "last_message_at",
        "last_activity_at",
        "version",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Interaction], search_term: str
    ) -> tuple[QuerySet[Interaction], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        searched_id = uuid_or_none(term)
        if searched_id is not None:
            # An id pasted from a log line or an error's details: the interaction itself, or
            # the one the message with that id belongs to. Two unique-index seeks, no scan.
            of_message = Message.objects.filter(pk=searched_id).values_list("interaction_id", flat=True)[:1]
            return queryset.filter(Q(pk=searched_id) | Q(pk__in=list(of_message))), False
        # Owners and messages are read first, by themselves, so that the interactions need no
        # join (on MongoDB a join is a $lookup for every interaction). The content search is
        # the one read that may scan (there is no text index): only when staff search.
        owners = User.objects.filter(username__icontains=term).values_list("pk", flat=True)[:OWNER_SEARCH_LIMIT]
        with_words = (
            Message.objects.filter(content__icontains=term)
            .order_by("-created_at", "-id")
            .values_list("interaction_id", flat=True)[:CONTENT_SEARCH_LIMIT]
        )
        matched = Q(title__icontains=term) | Q(owner_id__in=list(owners)) | Q(pk__in=set(with_words))
        return queryset.filter(matched), False

    class Media:
        # The transcript's styles: a static file, since the Content-Security-Policy allows no inline style.
        css = {"all": ("admin/interactions/transcript.css",)}

    @admin.display(description="Conversation")
    def transcript(self, obj: Interaction) -> SafeString:
        if obj.pk is None:
            return SafeString("")
        limit = settings.ADMIN_TRANSCRIPT_MESSAGES
        messages = message_latest(interaction=obj, limit=limit)
        return render_to_string(
            "admin/interactions/transcript.html",
            {
                "messages": messages,
                "shown": len(messages),
                "total": obj.message_count,
                "all_url": f"{reverse('admin:messages_app_message_changelist')}?interaction={obj.pk}",
                "problem_statuses": (MessageStatus.FAILED, MessageStatus.INCOMPLETE),
            },
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        context = getattr(response, "context_data", None)
        if request.method == "GET" and response.status_code == 200 and context and context.get("original"):
            interaction = context["original"]
            staff_access_record(
                staff_user=request.user,
                interaction_id=interaction.pk,
                interaction_title=str(interaction),
                action=StaffAccessAction.VIEW,
            )
        return response

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        interaction_update(interaction=obj, **{name: form.cleaned_data[name] for name in form.changed_data})

    def delete_model(self, request, obj):  # type: ignore[no-untyped-def]
        interaction_delete(interaction=obj)

    def delete_queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        for interaction in queryset:
            interaction_delete(interaction=interaction)

    @admin.action(description="Export selected interactions as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Interaction]) -> StreamingHttpResponse:
        return self._export(request, queryset, ExportJSONRenderer())

    @admin.action(description="Export selected interactions as Markdown")
    def export_markdown(self, request: HttpRequest, queryset: QuerySet[Interaction]) -> StreamingHttpResponse:
        return self._export(request, queryset, ExportMarkdownRenderer())

    def _export(
        self, request: HttpRequest, queryset: QuerySet[Interaction], renderer: ExportRenderer
    ) -> StreamingHttpResponse:
        interactions = list(queryset.select_related("owner").order_by("-last_activity_at", "-id"))
        for interaction in interactions:
            staff_access_record(
                staff_user=request.user,
                interaction_id=interaction.pk,
                interaction_title=str(interaction),
                action=StaffAccessAction.EXPORT,
            )
        response = StreamingHttpResponse(
            _encoded(renderer.stream_many(interactions=interactions)),
            content_type=f"{renderer.media_type}; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="interactions.{renderer.extension}"'
        return response


def _encoded(parts: Iterator[str]) -> Iterator[bytes]:
    for part in parts:
        yield part.encode()
