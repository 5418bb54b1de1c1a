"""Welcome emails: sent from the outbox after the apply committed, at most once per extension."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlparse

import aiosmtplib
from sqlalchemy import select

from app.db import session_scope, utcnow
from app.directory.models import Extension
from app.runtime import Runtime
from app.sync.models import Outbox

log = logging.getLogger("pbx_entra.mail")
MAX_ATTEMPTS = 3


def welcome_message(ext: Extension, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ext.email or ""
    msg["Subject"] = f"Welcome to Linkus: your extension {ext.number}"
    name = " ".join(filter(None, [ext.first_name, ext.last_name])) or "there"
    msg.set_content(
        f"Hello {name},\n\nYour phone extension is {ext.number}. Sign in to the Linkus apps with "
        "your Microsoft account to make and take calls.\n"
    )
    return msg


async def _send(runtime: Runtime, message: EmailMessage) -> None:
    assert runtime.settings.smtp_url is not None
    url = urlparse(runtime.settings.smtp_url.get_secret_value())
    await aiosmtplib.send(
        message,
        hostname=url.hostname or "127.0.0.1",
        port=url.port or (465 if url.scheme == "smtps" else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=url.scheme == "smtps",
        start_tls=True if url.scheme == "smtp+starttls" else None,
        timeout=30,
    )


async def send_pending(runtime: Runtime, pbx_id: str | None = None) -> int:
    """Send what the outbox holds; returns how many were sent. Failures never fail a run."""
    if runtime.settings.smtp_url is None:
        return 0
    sender = runtime.settings.mail_from or "pbx@localhost"
    sent = 0
    async with session_scope(runtime.sessionmaker) as session:
        stmt = select(Outbox).where(Outbox.status == "pending", Outbox.kind == "welcome_email")
        if pbx_id:
            stmt = stmt.where(Outbox.pbx_id == pbx_id)
        items = list((await session.execute(stmt.order_by(Outbox.created_at))).scalars())
    for item in items:
        async with session_scope(runtime.sessionmaker) as session:
            row = await session.get(Outbox, item.id, with_for_update=True)
            ext = await session.get(Extension, item.extension_id) if item.extension_id else None
            if row is None or row.status != "pending":
                continue
            if ext is None:
                row.status = "dropped"
                continue
            row.attempts += 1
            try:
                await _send(runtime, welcome_message(ext, sender))
            except (aiosmtplib.SMTPException, OSError) as exc:
                row.last_error = type(exc).__name__
                log.warning(
                    "welcome email to extension %s failed: %s", ext.number, type(exc).__name__
                )
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = "failed"
                    ext.welcome_email_status = "failed"
                    ext.welcome_email_at = utcnow()
                continue
            row.status = "sent"
            row.sent_at = utcnow()
            ext.welcome_email_status = "sent"
            ext.welcome_email_at = row.sent_at
            sent += 1
    return sent


async def queue_welcome(session: Any, extension: Extension) -> None:
    """Queue a (re)send of one extension's welcome email."""
    from app.db import new_id

    session.add(
        Outbox(
            id=new_id(),
            pbx_id=extension.pbx_id,
            kind="welcome_email",
            extension_id=extension.id,
            payload={},
            status="pending",
            attempts=0,
        )
    )
    extension.welcome_email_status = "pending"
    extension.welcome_email_at = None
    await session.flush()
