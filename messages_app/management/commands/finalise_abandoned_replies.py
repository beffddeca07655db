"""Finalise abandoned replies in bulk: safe from cron while the service runs.

Every write it makes is one conditional update on a claim's token (see
messages_app.services), so it never touches a reply that a live worker is generating.
gunicorn.conf.py runs it with --dead-holder when a worker dies and with --dead-local
when the server starts.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messages_app.services import replies_abandoned_finalise


class Command(BaseCommand):
    help = (
        "Mark replies left in_progress by a crashed worker or a failed write as failed (reply_abandoned, "
        "retryable), recount their interactions and free their reply slots."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dead-holder",
            metavar="HOST:PID",
            help="Also finalise at once the claims of this worker process, known to be dead.",
        )
        parser.add_argument(
            "--dead-local",
            action="store_true",
            help="Also finalise the claims of this host whose worker process no longer exists.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dead_host, dead_pid = "", None
        if options["dead_holder"]:
            host, _, pid = options["dead_holder"].rpartition(":")
            if not host or not pid.isdigit():
                raise CommandError("--dead-holder must be HOST:PID")
            dead_host, dead_pid = host, int(pid)
        finalised = replies_abandoned_finalise(dead_host=dead_host, dead_pid=dead_pid, dead_local=options["dead_local"])
        self.stdout.write(f"finalised abandoned replies on {finalised} interaction(s)")
