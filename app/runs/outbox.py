"""Welcome emails: sent from the outbox after the apply committed, at most once per extension,
retried with backoff until they go through or are given up."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import unquote, urlparse

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, ring_after_commit, session_scope, utcnow
from app.directory.models import Extension
from app.runs import repository as runs_repo
from app.runs.models import Outbox
from app.runtime import Runtime

log = logging.getLogger("pbx_entra.mail")
OUTBOX = "outbox"  # the doorbell of the outbox loop
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)


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


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt: 30 s, 1 min, 2 min, … at most an hour."""
    delay: timedelta = RETRY_FIRST * (2 ** max(0, attempts - 1))
    return min(delay, RETRY_MAX)


async def send_pending(
    runtime: Runtime, pbx_id: str | None = None, *, now: datetime | None = None
) -> int:
    """Send what the outbox holds and is due; returns how many were sent. A failed send is
    retried with backoff, and given up after WELCOME_EMAIL_GIVE_UP_SECONDS (status `failed`,
    with the mail server's answer). Failures never fail a run."""
    if runtime.settings.smtp_url is None:
        return 0
    now = now or utcnow()
    give_up = timedelta(seconds=runtime.settings.welcome_email_give_up_seconds)
    sender = runtime.settings.mail_from or "pbx@localhost"
    sent = 0
    async with session_scope(runtime.sessionmaker) as session:
        items = await runs_repo.due_outbox(session, "welcome_email", now, pbx_id)
    for item in items:
        async with session_scope(runtime.sessionmaker) as session:
            row, ext = await runs_repo.outbox_item(session, item.id)
            if row is None or row.status != "pending":
                continue
            if ext is None:
                row.status = "dropped"
                continue
            row.attempts += 1
            try:
                await _send(runtime, welcome_message(ext, sender))
            except (aiosmtplib.SMTPException, OSError) as exc:
                row.last_error = _error_text(exc)
                log.warning(
                    "welcome email to extension %s failed: %s", ext.number, type(exc).__name__
                )
                if now - row.created_at >= give_up:
                    row.status = "failed"
                    ext.welcome_email_status = "failed"
                    ext.welcome_email_at = now
                    ext.welcome_email_error = row.last_error
                else:
                    row.next_attempt_at = now + retry_delay(row.attempts)
                continue
            row.status = "sent"
            row.sent_at = utcnow()
            ext.welcome_email_status = "sent"
            ext.welcome_email_at = row.sent_at
            ext.welcome_email_error = None
            sent += 1
    return sent


async def queue_welcome(session: AsyncSession, extension: Extension) -> None:
    """Queue a (re)send of one extension's welcome email; sent after the commit."""
    session.add(
        Outbox(
            id=new_id(),
            pbx_id=extension.pbx_id,
            kind="welcome_email",
            extension_id=extension.id,
            payload={},
            status="pending",
            attempts=0,
            created_at=utcnow(),
        )
    )
    extension.welcome_email_status = "pending"
    extension.welcome_email_at = None
    extension.welcome_email_error = None
    await session.flush()
    ring_after_commit(session, OUTBOX)
