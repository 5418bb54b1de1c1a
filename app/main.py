"""The application factory: routers, middleware, lifespan (engine, bootstrap, background work)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from app import docs, errors, logs, metrics, migrate
from app.clock import Clock
from app.config import Settings, get_settings
from app.db import create_engine, session_scope, sessionmaker, wakeup_of
from app.directory.endpoints import router as directory_router
from app.integration.endpoints import callback_router, install_integration_errors
from app.integration.endpoints import router as integration_router
from app.middleware import RequestContext
from app.notifications import lifecycle as notifications_lifecycle
from app.notifications import processing, subscriptions
from app.notifications.endpoints import NOTIFICATIONS
from app.notifications.endpoints import api_router as subscriptions_router
from app.notifications.endpoints import router as webhooks_router
from app.notifications.webhooks import Inbox
from app.presence import lifecycle as presence_lifecycle
from app.presence.loop import PresenceLoop
from app.runs import queue as runs_queue
from app.runs.outbox import OUTBOX, send_pending
from app.runtime import Runtime
from app.scheduling.supervisor import Supervisor
from app.scheduling.timers import ScheduleTimers
from app.sso.endpoints import me_router
from app.sso.endpoints import router as sso_router
from app.sync.endpoints import router as sync_router
from app.sync.worker import Worker
from app.tenants import service as tenants_service
from app.tenants.endpoints import operator_router
from app.tenants.endpoints import router as tenants_router

log = logging.getLogger("pbx_entra")
PURGE_EVERY_SECONDS = 3600

DESCRIPTION = """Connects a cloud PBX to Microsoft Entra ID through Microsoft Graph.

PBX routes take `Authorization: Bearer <PBX API key>`; operator routes (`/api/v1/pbxes`) take the
`ADMIN_API_KEY`. Errors are RFC 9457 problem documents with a stable `code`."""


def supervisor(runtime: Runtime, worker: Worker, presence: PresenceLoop) -> Supervisor:
    """The loops of one process: none waits for another."""
    cfg = runtime.settings
    maker = runtime.sessionmaker
    sup = Supervisor()
    sup.add("runs", worker.loop)
    sup.every("reaping", cfg.worker_poll_seconds, worker.reap)
    sup.every(
        "notifications",
        cfg.worker_poll_seconds,
        lambda: processing.process(runtime),
        wakeup=wakeup_of(maker, NOTIFICATIONS),
    )
    sup.every(
        "subscriptions", cfg.subscription_check_seconds, lambda: subscriptions.maintain(runtime)
    )
    sup.every(
        "outbox",
        cfg.worker_poll_seconds,
        lambda: send_pending(runtime),
        wakeup=wakeup_of(maker, OUTBOX),
    )
    sup.every("purge", PURGE_EVERY_SECONDS, lambda: _purge(runtime))
    if cfg.presence_enabled:
        # Teams presence: notifications read in bulk, and each PBX's upkeep (stop conditions,
        # subscription, polling, catch-up); sync runs never hold it up, nor it them.
        sup.every("presence-notifications", cfg.presence_notify_seconds, presence.notifications)
        sup.every("presence-upkeep", cfg.presence_tick_seconds, presence.tick)
    return sup


async def _purge(runtime: Runtime) -> int:
    async with session_scope(runtime.sessionmaker) as session:
        return await runs_queue.purge(session)


@dataclass(frozen=True)
class Launch:
    """What an app's next start runs with: settings (None: read from the environment then) and
    the clock (None: the system's)."""

    settings: Settings | None = None
    clock: Clock | None = None


def configure(
    app: FastAPI, settings: Settings | None = None, *, clock: Clock | None = None
) -> None:
    """Set what `app` runs with from its next start. An app stopped and configured again starts
    anew (nothing of its last run is kept), and keeps its route table, which is built on its
    first request."""
    app.state.launch = Launch(settings, clock)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    launch: Launch = app.state.launch
    cfg = launch.settings or get_settings()
    logs.configure(cfg.log_level)
    engine = create_engine(cfg.database_url)
    app.state.settings = cfg
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker(engine)
    app.state.runtime = Runtime.create(cfg, app.state.sessionmaker, launch.clock)
    # Caches of an earlier run of this app (its HTTP client is closed) are not carried over.
    app.state.sso_signing_keys = None
    app.state.inbox = Inbox(app.state.sessionmaker, app.state.runtime.clock)
    # Presence first: it deletes its own subscription before the others are removed.
    presence_lifecycle.install(app.state.runtime)
    notifications_lifecycle.install(app.state.runtime)
    app.state.worker = Worker(
        app.state.runtime,
        lease_seconds=cfg.worker_lease_seconds,
        poll_seconds=cfg.worker_poll_seconds,
        concurrency=cfg.worker_concurrency,
        on_claim=[notifications_lifecycle.run_claimed],
    )
    app.state.presence = PresenceLoop(app.state.runtime)
    app.state.supervisor = supervisor(app.state.runtime, app.state.worker, app.state.presence)
    if cfg.pbx_api_key is not None:
        async with session_scope(app.state.sessionmaker) as session:
            created = await tenants_service.bootstrap_default(
                session, cfg.pbx_api_key.get_secret_value()
            )
            if created is not None:
                log.info("created the default PBX from PBX_API_KEY")
    if cfg.worker_enabled:
        app.state.supervisor.start()
    app.state.timers = ScheduleTimers(
        app.state.runtime,
        poll_seconds=cfg.schedule_poll_seconds,
        on_fire=app.state.worker.wake,
        clock_start=cfg.schedule_clock_start,
    )
    if cfg.scheduler_enabled:
        app.state.timers.start()
    log.info("pbx-entra started")
    try:
        yield
    finally:
        await app.state.timers.stop()
        await app.state.supervisor.stop()
        await app.state.presence.release()
        await app.state.runtime.close()
        await engine.dispose()


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The service; `clock` replaces the system clocks (tests pass a FakeClock)."""

    # The docs pages are the service's own (app/docs.py), never FastAPI's CDN-loading defaults.
    app = FastAPI(
        title="pbx-entra",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    docs.install(app)
    errors.install(app)
    install_integration_errors(app)
    app.add_middleware(RequestContext)
    app.include_router(operator_router)
    app.include_router(tenants_router)
    app.include_router(directory_router)
    app.include_router(integration_router)
    app.include_router(callback_router)
    app.include_router(sync_router)
    app.include_router(sso_router)
    app.include_router(me_router)
    app.include_router(subscriptions_router)
    app.include_router(webhooks_router)
    errors.document(app)
    configure(app, settings, clock=clock)

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
