# The base image is a build argument so that the image can be built where no registry
# serves the official one: scripts/test-image passes a stand-in made from Debian packages
# there (named for what it is). No `# syntax=` line: it would make BuildKit fetch a frontend.
ARG PYTHON_IMAGE=python:3.11-slim

# Builder: resolve and install the pinned requirements into a self-contained venv, so the
# final image carries no pip cache or build leftovers. Every dependency ships a manylinux
# wheel for CPython 3.11, so no compiler or apt packages are needed.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt


FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    DATABASE_URL=sqlite:////data/db.sqlite3

# A fixed uid/gid keeps file ownership predictable on mounted volumes, and a numeric
# USER lets orchestrators (runAsNonRoot) verify it is not root without an /etc/passwd.
# The home directory is the app user's only writable place (gunicorn keeps its control
# socket there); the code is not.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

# The embedded-defaults SQLite database lives in /data, the one directory the app user
# owns, declared a volume so it survives the container (ignored when MONGODB_URI is set).
# Created and owned before VOLUME: changes to a volume's path after it are discarded.
RUN install --directory --owner=10001 --group=10001 --mode=0750 /data
VOLUME ["/data"]

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Code stays owned by root: the app user can read it but not rewrite it.
COPY . .

# Static files are built into the image (whitenoise serves them); collectstatic needs no
# database, and the settings' defaults are enough to import them. DJANGO_STATIC_MANIFEST
# makes this run write hashed, compressed files and their manifest: the settings cannot
# find a manifest before the first collectstatic has written one. Metrics stay in this
# process (an empty PROMETHEUS_MULTIPROC_DIR) so that the build leaves no metric files.
# The settings have no secret key without DEBUG: this throwaway one exists only for this
# build step and signs nothing; the running container gets its own.
# Then the multiprocess metrics directory: gunicorn empties it when it starts, but a command
# run before or without it (the compose `migrate` service, `manage.py` in a new container)
# creates some metrics at import, so it must exist and be the app user's already.
RUN PROMETHEUS_MULTIPROC_DIR='' DJANGO_STATIC_MANIFEST=true DJANGO_SECRET_KEY=collectstatic-at-build-time-only \
        python manage.py collectstatic --noinput \
    && install --directory --owner=10001 --group=10001 --mode=0700 /tmp/prometheus

USER 10001:10001

EXPOSE 8000

# Liveness: /healthz checks only that the process answers, so that an outage of the
# database or cache never gets healthy containers restarted in a loop (readiness,
# /readyz, is for load balancers; docker-compose.yml uses it for the app service).
# Slim images have no curl; urlopen raises (non-zero exit) on connection errors.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

# gunicorn.conf.py: gevent workers (GUNICORN_WORKERS × GUNICORN_WORKER_CONNECTIONS requests in flight).
CMD ["gunicorn", "-c", "gunicorn.conf.py", "chatproject.wsgi:application"]
