# pbx-entra: slim Python 3.11 image, non-root, migrates then serves.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY emulator ./emulator
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////data/pbx-entra.db
RUN useradd --system --uid 10001 --home-dir /srv pbx && mkdir -p /data && chown pbx /data
COPY --from=build /install /usr/local
WORKDIR /srv
COPY --chown=pbx alembic.ini ./
COPY --chown=pbx migrations ./migrations
USER pbx
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
# `serve` checks the settings and the database, runs the migrations, then starts uvicorn.
CMD ["pbx-entra", "serve", "--host", "0.0.0.0", "--port", "8000"]
