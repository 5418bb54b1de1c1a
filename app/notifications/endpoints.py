"""`/webhooks/graph` and `/webhooks/graph/lifecycle` (no API key), and the subscriptions held."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from app.auth import CurrentPbx, Session
from app.db import wakeup_of
from app.errors import ProblemError
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


async def _receive(request: Request, lifecycle: bool) -> Response:
    token = request.query_params.get("validationToken")
    if token is not None:
        # The handshake: the token back, unchanged, as text/plain, at once.
        return PlainTextResponse(token, status_code=200)
    try:
        body: Any = json.loads(await request.body())
        items = body["value"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ProblemError(
            'Expected a notification batch {"value": [...]}.',
            status=400,
            code="invalid_notification",
        ) from None
    inbox: webhooks.Inbox = request.app.state.inbox
    await inbox.accept([i for i in items if isinstance(i, dict)], lifecycle=lifecycle)
    # The counting loop takes them from the database (any replica); here, at once.
    wakeup_of(request.app.state.sessionmaker, NOTIFICATIONS).ring()
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/webhooks/graph", status_code=202, responses={200: {"description": "Validation handshake"}}
)
async def graph_notifications(request: Request) -> Response:
    """Graph's notificationUrl: the validation handshake, or a batch of change notifications."""
    return await _receive(request, lifecycle=False)


@router.post(
    "/webhooks/graph/lifecycle",
    status_code=202,
    responses={200: {"description": "Validation handshake"}},
)
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
