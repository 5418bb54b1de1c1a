"""`/webhooks/graph` and `/webhooks/graph/lifecycle` (no API key), and the subscriptions held."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app.auth import CurrentPbx, Session
from app.db import wakeup_of
from app.errors import ProblemError, problem_responses
from app.notifications import repository as repo
from app.notifications import webhooks
from app.notifications.models import GraphSubscription
from app.pagination import Page, PageParams, next_cursor, page_params, paginate

NOTIFICATIONS = "notifications"  # the doorbell of the counting loop
router = APIRouter(tags=["notifications"])
api_router = APIRouter(prefix="/api/v1/integration", tags=["integration"])


class SubscriptionOut(BaseModel):
    id: str
    resource: str
    change_type: str
    expires_at: str
    status: str


def _invalid(detail: str) -> ProblemError:
    return ProblemError(detail, status=400, code="invalid_notification", title="Bad request")


def _batch(raw: bytes) -> list[Any]:
    """The items of a notification batch `{"value": [...]}`, bounded in depth and count."""
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise _invalid('Expected a notification batch {"value": [...]}.') from None
    items = body.get("value") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise _invalid('Expected a notification batch {"value": [...]}.')
    if len(items) > webhooks.MAX_ITEMS:
        raise _invalid(f"At most {webhooks.MAX_ITEMS} notifications per request.")
    if not webhooks.depth_within(body):
        raise _invalid(f"The batch nests deeper than {webhooks.MAX_DEPTH} levels.")
    return items


async def _receive(request: Request, lifecycle: bool) -> Response:
    token = request.query_params.get("validationToken")
    if token is not None:
        # The handshake: the token back, unchanged, as text/plain, at once.
        return PlainTextResponse(token, status_code=200)
    items = _batch(await request.body())
    inbox: webhooks.Inbox = request.app.state.inbox
    try:
        await inbox.accept(items, lifecycle=lifecycle)
    except (SQLAlchemyError, OSError):
        # Not stored: Graph delivers the batch again.
        raise ProblemError(
            "The notifications could not be stored; deliver them again.",
            status=503,
            code="unavailable",
            title="Service unavailable",
        ) from None
    # The counting loop takes them from the database (any replica); here, at once.
    wakeup_of(request.app.state.sessionmaker, NOTIFICATIONS).ring()
    return Response(status_code=status.HTTP_202_ACCEPTED)


WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Validation handshake", "content": {"text/plain": {}}},
    202: {"description": "Accepted (items that are not genuine are dropped)"},
    **problem_responses(503),
}


@router.post("/webhooks/graph", status_code=202, responses=WEBHOOK_RESPONSES)
async def graph_notifications(request: Request) -> Response:
    """Graph's notificationUrl: the validation handshake, or a batch of change notifications."""
    return await _receive(request, lifecycle=False)


@router.post("/webhooks/graph/lifecycle", status_code=202, responses=WEBHOOK_RESPONSES)
async def graph_lifecycle(request: Request) -> Response:
    """Graph's lifecycleNotificationUrl: reauthorizationRequired, subscriptionRemoved, missed."""
    return await _receive(request, lifecycle=True)


@api_router.get("/subscriptions", response_model=Page[SubscriptionOut])
async def list_subscriptions(
    pbx: CurrentPbx, session: Session, params: Annotated[PageParams, Depends(page_params)]
) -> Page[SubscriptionOut]:
    """The Graph change-notification subscriptions held for this PBX."""
    stmt = paginate(
        repo.subscriptions_query(pbx.id), GraphSubscription.resource, GraphSubscription.id, params
    )
    rows, cursor = next_cursor(list((await session.execute(stmt)).scalars()), params, "resource")
    return Page[SubscriptionOut](
        items=[
            SubscriptionOut(
                id=s.id,
                resource=s.resource,
                change_type=s.change_type,
                expires_at=s.expires_at.isoformat(),
                status=s.status,
            )
            for s in rows
        ],
        next_cursor=cursor,
    )
