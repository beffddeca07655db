import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

# The server never starts without a secret key (the built-in one is for DEBUG only).
from core.checks import require_secret_key
from core.wsgi import chunked_bodies_read

require_secret_key()

application = chunked_bodies_read(get_wsgi_application())
