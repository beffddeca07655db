"""rest_framework.authtoken does not need migrations of its own on MongoDB.

Its Token's primary key is a CharField (`key`) and TokenProxy is a proxy, so DRF's own
migrations (0001..0004) already work; 0001_initial here is their equivalent, generated only
because settings.MIGRATION_MODULES currently redirects "authtoken" to this package. Drop the
"authtoken" entry from MIGRATION_MODULES and delete this package together, before any
MongoDB database has been migrated with it.
"""
