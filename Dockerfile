# syntax=docker/dockerfile:1
# The cda-bot image: `cda-bot serve` by default; the same image runs the one-shot migration
# (`cda-bot db upgrade`) and every admin command. compose.yaml puts them together.
#   docker build -t cda-bot .
#   docker run --rm --env-file .env cda-bot db upgrade
#   docker run -d --env-file .env -p 8000:8000 cda-bot

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/cda-bot
WORKDIR /src
# .dockerignore keeps tests, benchmarks, local databases and .env out of the context.
COPY . .
# The package and its runtime dependencies only: no dev extras (pytest, playwright, ruff).
RUN /opt/cda-bot/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/cda-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A fixed numeric id, so an orchestrator's "must not run as root" check can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 cdabot \
    && useradd --system --uid 10001 --gid cdabot --home-dir /app --shell /usr/sbin/nologin cdabot \
    && install -d -o cdabot -g cdabot /app
# The installed code stays root's and read-only to the bot; /app is its only writable place (the SQLite
# file, if DATABASE_URL is left at its default).
COPY --from=build /opt/cda-bot /opt/cda-bot
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz): the slim image has no curl, so Python's urllib asks. Readiness (/readyz,
# the database) is for the proxy to route by, not a reason to call the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Exec form: cda-bot is PID 1 and gets SIGTERM itself, so requests in flight and accepted messages
# finish before it exits (give it stop_grace_period: 60s, see compose.yaml).
ENTRYPOINT ["cda-bot"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
