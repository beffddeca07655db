"""Migrations of Django's contrib apps for MongoDB (settings.MIGRATION_MODULES when MONGODB_URI is set).

The contrib apps' own migrations create integer AutoField primary keys, which MongoDB
cannot generate; these were created with ObjectIdAutoField as django-mongodb-backend's
"Configuring Django's contrib apps" guide describes:

    MONGODB_URI=mongodb://127.0.0.1:1/chat python manage.py makemigrations admin auth contenttypes

`makemigrations` reads the applied-migrations history from the server before writing, so
without a reachable server it must run with that check skipped (see /tmp/mongo_notes.md or
tests/test_mongodb_contract.py, which proves offline that nothing is pending). Regenerate
after a Django upgrade that changes a contrib model.
"""
