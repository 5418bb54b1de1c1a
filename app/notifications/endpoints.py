"""`/webhooks/graph` and `/webhooks/graph/lifecycle` (no API key), and the subscriptions held."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from app.auth import CurrentPbx, Session
from app.errors import ProblemError
from app.notifications import repository as repo
from app.notifications import webhooks

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
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()
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


@api_router.get("/subscriptions", response_model=list[SubscriptionOut])
async def list_subscriptions(pbx: CurrentPbx, session: Session) -> list[SubscriptionOut]:
    """The Graph change-notification subscriptions held for this PBX."""
    return [
        SubscriptionOut(
            id=s.id,
            resource=s.resource,
            change_type=s.change_type,
            expires_at=s.expires_at.isoformat(),
            status=s.status,
        )
        for s in await repo.subscriptions_of(session, pbx.id)
    ]
