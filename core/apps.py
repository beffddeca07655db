from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "API plumbing"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from core import checks  # noqa: F401 (registers the system checks)
        from core.sqlite import configure

        connection_created.connect(configure, dispatch_uid="core.sqlite")
