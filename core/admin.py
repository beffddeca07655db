"""django-axes' admin pages without their date hierarchy.

A date hierarchy lists dates with QuerySet.datetimes(), which this project does not use on
MongoDB (django-mongodb-backend's limitations; tests/test_mongodb_contract_security.py shows the
pages without it). Everything else is axes' own: staff see the failed attempts and unlock a
user and address by deleting their attempt.
"""

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin


class LockoutAttemptAdmin(AccessAttemptAdmin):
    date_hierarchy = None


class LockoutLogAdmin(AccessLogAdmin):
    date_hierarchy = None


class LockoutFailureLogAdmin(AccessFailureLogAdmin):
    date_hierarchy = None


for model, model_admin in (
    (AccessAttempt, LockoutAttemptAdmin),
    (AccessLog, LockoutLogAdmin),
    (AccessFailureLog, LockoutFailureLogAdmin),
):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
