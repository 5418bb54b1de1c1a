"""The application factory: routers, middleware, lifespan (engine, bootstrap, background work)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from app import errors, logs, metrics, migrate
from app.config import Settings, get_settings
from app.db import create_engine, session_scope, sessionmaker
from app.directory.endpoints import router as directory_router
from app.integration.endpoints import callback_router, install_integration_errors
from app.integration.endpoints import router as integration_router
from app.middleware import RequestContext
from app.notifications.endpoints import api_router as subscriptions_router
from app.notifications.endpoints import router as webhooks_router
from app.notifications.webhooks import Inbox
from app.presence.loop import PresenceLoop
from app.runtime import Runtime
from app.scheduling.timers import ScheduleTimers
from app.sync.endpoints import router as sync_router
from app.sync.worker import Worker
from app.tenants import service as tenants_service
from app.tenants.endpoints import operator_router
from app.tenants.endpoints import router as tenants_router

log = logging.getLogger("pbx_entra")

DESCRIPTION = """Connects a cloud PBX to Microsoft Entra ID through Microsoft Graph.

PBX routes take `Authorization: Bearer <PBX API key>`; operator routes (`/api/v1/pbxes`) take the
`ADMIN_API_KEY`. Errors are RFC 9457 problem documents with a stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        logs.configure(cfg.log_level)
        engine = create_engine(cfg.database_url)
        app.state.settings = cfg
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker(engine)
        app.state.runtime = Runtime.create(cfg, app.state.sessionmaker)
        app.state.inbox = Inbox(app.state.sessionmaker)
        app.state.worker = Worker(
            app.state.runtime,
            lease_seconds=cfg.worker_lease_seconds,
            poll_seconds=cfg.worker_poll_seconds,
            subscription_check_seconds=cfg.subscription_check_seconds,
        )
        if cfg.pbx_api_key is not None:
            async with session_scope(app.state.sessionmaker) as session:
                created = await tenants_service.bootstrap_default(
                    session, cfg.pbx_api_key.get_secret_value()
                )
                if created is not None:
                    log.info("created the default PBX from PBX_API_KEY")
        if cfg.worker_enabled:
            app.state.worker.start()
        # Presence is a loop of its own: sync runs never hold it up, nor it them.
        app.state.presence = PresenceLoop(app.state.runtime)
        if cfg.worker_enabled and cfg.presence_enabled:
            app.state.presence.start()
        app.state.timers = ScheduleTimers(
            app.state.runtime, poll_seconds=cfg.schedule_poll_seconds, on_fire=app.state.worker.wake
        )
        if cfg.scheduler_enabled:
            app.state.timers.start()
        log.info("pbx-entra started")
        try:
            yield
        finally:
            await app.state.timers.stop()
            await app.state.presence.stop()
            await app.state.worker.stop()
            await app.state.runtime.close()
            await engine.dispose()

    app = FastAPI(
        title="pbx-entra",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    install_integration_errors(app)
    app.add_middleware(RequestContext)
    app.include_router(operator_router)
    app.include_router(tenants_router)
    app.include_router(directory_router)
    app.include_router(integration_router)
    app.include_router(callback_router)
    app.include_router(sync_router)
    app.include_router(subscriptions_router)
    app.include_router(webhooks_router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database answers and its schema is at the migrations' head."""
        head = migrate.head_revision()
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            current = await migrate.current_revision(request.app.state.engine)
        except Exception as exc:  # any database failure means "not ready"
            log.warning("readiness check failed: %s", type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        ok = current == head
        body = {
            "status": "ok" if ok else "unavailable",
            "database": "ok",
            "migration": current,
            "head": head,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


app = create_app()
