"""Change notifications: `/subscriptions` and the webhook deliveries behind them.

Rules and where they come from:
- Create, read, renew (PATCH), delete, reauthorize:
  https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions (201 and the
  subscription; "If validation fails, the request to create the subscription returns a 400 Bad
  Request error"), subscription-update.md, subscription-delete.md (204),
  subscription-reauthorize.md (204), subscription-list.md (an app sees the subscriptions it made,
  for the signed-in user when delegated; "the clientState property value is not returned").
- notificationUrl and lifecycleNotificationUrl "must make use of the HTTPS protocol"
  (https://learn.microsoft.com/en-us/graph/api/resources/subscription); the emulator's
  `allow_http_notifications` option relaxes this for a local demo. clientState is at most 255
  characters.
- Maximum expiration per resource (change-notifications-overview.md, "Subscription lifetime"):
  users and groups 41,760 minutes, Outlook contacts 10,080 minutes, presence 60 minutes. Beyond
  it Graph answers "Subscription expiration can only be N minutes in the future.".
- Users and groups support the `updated` and `deleted` change types: "Use updated to receive
  notifications when user or group is created, updated or soft deleted. Use deleted to receive
  notifications when user or group is permanently deleted." (subscription resource type).
- Validation (change-notifications-delivery-webhooks.md, "notificationUrl validation"): a POST to
  the URL with `?validationToken=…` (`Content-Type: text/plain; charset=utf-8`); the endpoint must
  answer 200, `text/plain`, the URL-decoded token, within 10 seconds; with a lifecycle URL, both
  are validated (change-notifications-lifecycle-events.md).
- Notifications are POSTed as `{"value": [...]}`, several changes (even of several
  subscriptions) in one POST, each with subscriptionId, subscriptionExpirationDateTime,
  changeType, resource, resourceData (`@odata.type`, `@odata.id`, `id`), clientState, tenantId.
- Presence (changenotifications-for-presence.md): delegated Presence.Read.All only, resource
  `communications/presences/{id}` or `/communications/presences?$filter=id in (...)` with at most
  650 ids, change type `updated`, basic notifications carry only the user id. One presence
  subscription per signed-in user and application: a second one is refused with 409 Conflict "A
  subscripton already exists. It must be deleted before a another can be made." (Graph's own
  wording, as reported in microsoft-graph-docs-contrib issue 2219).
- Lifecycle notifications (change-notifications-lifecycle-events.md): `reauthorizationRequired`
  when the subscription is about to expire or when asked through the control API (then delivery
  pauses until `/reauthorize` or a renewal), `subscriptionRemoved`, `missed`, POSTed to
  lifecycleNotificationUrl as `{"value": [{"subscriptionId", "subscriptionExpirationDateTime",
  "tenantId", "clientState", "lifecycleEvent"}]}`. Expired subscriptions are deleted and deliver
  nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

import httpx

from emulator.graph.access import require_permission
from emulator.graph.http import (
    GraphError,
    GraphRequest,
    GraphResponse,
    access_denied,
    normalize_path,
    router,
)
from emulator.graph.model import etag
from emulator.state import ChangeEvent, EmulatorState, Subscription, Tenant, utcnow
from emulator.tokens import Caller

DIRECTORY_MAX_MINUTES = 41_760
CONTACT_MAX_MINUTES = 10_080
PRESENCE_MAX_MINUTES = 60
MAX_PRESENCE_IDS = 650
MAX_CLIENT_STATE = 255
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")


def _invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


@dataclass
class Target:
    """What a subscription watches, parsed from its `resource`."""

    kind: str  # users, groups, contacts, presence
    ids: frozenset[str] | None = None  # one user or group, or the presence ids
    owner_id: str | None = None  # contacts: the mailbox
    folder_id: str | None = None  # contacts: a folder (None: the default Contacts folder)

    @property
    def max_minutes(self) -> int:
        if self.kind == "presence":
            return PRESENCE_MAX_MINUTES
        if self.kind == "contacts":
            return CONTACT_MAX_MINUTES
        return DIRECTORY_MAX_MINUTES


@dataclass
class Entry:
    """A subscription and what the emulator tracks about it."""

    subscription: Subscription
    target: Target
    change_types: frozenset[str]
    creator_id: str
    created_at: datetime = field(default_factory=utcnow)
    latest_tls: str = "v1_2"
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None
    # Set by a requested reauthorizationRequired: delivery pauses after it until reauthorized.
    reauthorize_by: datetime | None = None
    expiry_warning_sent: bool = False

    @property
    def id(self) -> str:
        return self.subscription.id

    def expired(self, now: datetime) -> bool:
        return self.subscription.expiration_date_time <= now

    def paused(self, now: datetime) -> bool:
        return self.reauthorize_by is not None and now >= self.reauthorize_by

    def to_json(self, hide_client_state: bool = False) -> dict[str, Any]:
        sub = self.subscription
        return {
            "id": sub.id,
            "resource": sub.resource,
            "applicationId": sub.app_id,
            "changeType": sub.change_type,
            "clientState": None if hide_client_state else sub.client_state,
            "notificationUrl": sub.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": sub.lifecycle_notification_url,
            "expirationDateTime": iso(sub.expiration_date_time),
            "creatorId": self.creator_id,
            "includeResourceData": sub.include_resource_data,
            "latestSupportedTlsVersion": self.latest_tls,
            "encryptionCertificate": self.encryption_certificate,
            "encryptionCertificateId": self.encryption_certificate_id,
            "notificationUrlAppId": None,
        }


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _invalid("expirationDateTime must be a date and time, e.g. 2024-01-01T00:00:00Z.")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Graph writes seven fractional digits; Python reads up to six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(f"'{value}' is not a valid expirationDateTime.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_PRESENCE_FILTER = re.compile(r"^\$filter=id\s+in\s*\((?P<ids>.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def parse_resource(resource: str) -> Target:
    """`users`, `users/{id}`, `groups`, `groups/{id}`, `me/contacts`, `users/{id}/contacts`,
    `(me|users/{id})/contactFolders/{id}/contacts`, `communications/presences/{id}`,
    `communications/presences?$filter=id in ('…','…')` (subscription-post-subscriptions.md,
    "Resources examples")."""
    raw = resource.strip()
    path, _, query = raw.partition("?")
    path = normalize_path(path)
    segments = [s for s in path.strip("/").split("/") if s]
    lower = [s.lower() for s in segments]
    if lower == ["users"] and not query:
        return Target("users")
    if len(lower) == 2 and lower[0] == "users" and not query:
        return Target("users", frozenset({segments[1]}))
    if lower == ["groups"] and not query:
        return Target("groups")
    if len(lower) == 2 and lower[0] == "groups" and not query:
        return Target("groups", frozenset({segments[1]}))
    if lower[:2] == ["communications", "presences"]:
        if len(lower) == 3 and not query:
            return Target("presence", frozenset({segments[2]}))
        if len(lower) == 2 and query:
            match = _PRESENCE_FILTER.match(unquote_plus(query))
            if match is None:
                raise _invalid("Presence subscriptions filter with id in ('{id}', ...).")
            ids = re.findall(r"'([^']*)'", match.group("ids"))
            if not ids:
                raise _invalid("The presence filter names no user ids.")
            if len(set(ids)) > MAX_PRESENCE_IDS:
                raise _invalid(
                    "Too many users: a presence subscription covers at most "
                    f"{MAX_PRESENCE_IDS} ids."
                )
            return Target("presence", frozenset(ids))
    if not query:
        owner: str | None = None
        rest: list[str] = []
        original: list[str] = []
        if lower[:1] == ["me"]:
            owner, rest = "me", lower[1:]
            original = segments[1:]
        elif len(lower) >= 2 and lower[0] == "users":
            owner, rest = segments[1], lower[2:]
            original = segments[2:]
        if owner is not None:
            if rest == ["contacts"]:
                return Target("contacts", owner_id=owner)
            if len(rest) == 3 and rest[0] == "contactfolders" and rest[2] == "contacts":
                return Target("contacts", owner_id=owner, folder_id=original[1])
    raise _invalid(f"The resource '{resource}' is not supported for subscriptions.")


# --- the hub: subscriptions, delivery, lifecycle ------------------------------------------------


class Hub:
    """Subscriptions of one emulator process and the background tasks that notify about them."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.entries: dict[str, Entry] = {}
        self.batch_window = 0.05  # seconds: changes arriving within it share one POST
        self.validation_timeout = 10.0  # the handshake's limit
        self.delivery_timeout = 3.0  # Graph waits 3 s for a 2xx (delivery-webhooks.md)
        self.retry_delays: tuple[float, ...] = (0.5, 2.0)
        self.reauthorization_lead = timedelta(minutes=15)
        self.reauthorization_grace = timedelta(minutes=10)
        self.tick = 1.0
        self.notification_ca: str | None = None
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._client_ca: str | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def ca_path(self) -> str | None:
        options = self.state.extra.get("options")
        return (
            self.notification_ca
            or getattr(options, "notification_ca", None)
            or self.state.extra.get("graph.notification_ca")
        )

    def client(self) -> httpx.AsyncClient:
        ca = self.ca_path()
        if self._client is None or self._client_ca != ca:
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=str(ca)) if ca else True
            )
            old = self._client
            self._client = httpx.AsyncClient(verify=verify, trust_env=False, follow_redirects=False)
            self._client_ca = ca
            if old is not None:
                self._spawn(old.aclose())
        return self._client

    def ensure_running(self) -> None:
        """Start the delivery and lifecycle tasks on the running loop (once)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._queue is not None:
            return
        self._loop = loop
        self._queue = asyncio.Queue()
        self._client = None
        self._tasks = set()
        self._spawn(self._deliver_forever())
        self._spawn(self._watch_lifecycle())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def hook(self, tenant: Tenant) -> None:
        if self.on_change not in tenant.hooks:
            tenant.hooks.append(self.on_change)

    def enqueue(self, url: str, item: dict[str, Any]) -> None:
        """Hand a notification to the delivery task (safe from any thread)."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, (url, item))

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._queue = None
        self._loop = None

    # -- subscriptions -------------------------------------------------------------------------

    def live(self, now: datetime | None = None) -> list[Entry]:
        """The unexpired subscriptions; expired ones are removed, as Graph deletes them."""
        now = now or utcnow()
        for entry in list(self.entries.values()):
            if entry.expired(now):
                self.entries.pop(entry.id, None)
        return list(self.entries.values())

    # -- change notifications ------------------------------------------------------------------

    def on_change(self, tenant: Tenant, event: ChangeEvent) -> None:
        """Tenant hook: turn a recorded change into notifications (delivered later, in the
        background, never inside the mutation)."""
        now = utcnow()
        for entry in list(self.entries.values()):
            sub = entry.subscription
            if sub.tenant_id != tenant.id or entry.expired(now) or entry.paused(now):
                continue
            item = _notification(tenant, entry, event)
            if item is not None:
                self.enqueue(sub.notification_url, item)

    def lifecycle(self, entry: Entry, event: str) -> bool:
        sub = entry.subscription
        if not sub.lifecycle_notification_url:
            return False
        self.enqueue(
            sub.lifecycle_notification_url,
            {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": iso(sub.expiration_date_time),
                "tenantId": sub.tenant_id,
                "clientState": sub.client_state,
                "lifecycleEvent": event,
            },
        )
        return True

    async def _deliver_forever(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.batch_window
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            by_url: dict[str, list[dict[str, Any]]] = {}
            for url, item in batch:
                by_url.setdefault(url, []).append(item)
            for url, items in by_url.items():
                self._spawn(self._post(url, items))

    async def _post(self, url: str, items: list[dict[str, Any]]) -> None:
        """POST one batch; retry a few times on failure (Graph retries for up to 4 hours)."""
        record: dict[str, Any] = {"url": url, "value": items, "status": None, "attempts": 0}
        self.deliveries.append(record)
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            record["attempts"] += 1
            try:
                response = await self.client().post(
                    url, json={"value": items}, timeout=self.delivery_timeout
                )
            except httpx.HTTPError as exc:
                record["status"] = None
                record["error"] = type(exc).__name__
                continue
            record["status"] = response.status_code
            if 200 <= response.status_code < 300:
                record.pop("error", None)
                return

    async def _watch_lifecycle(self) -> None:
        """Warn (reauthorizationRequired) before a subscription expires, drop expired ones."""
        while True:
            await asyncio.sleep(self.tick)
            now = utcnow()
            for entry in self.live(now):
                left = entry.subscription.expiration_date_time - now
                if not entry.expiry_warning_sent and left <= self.reauthorization_lead:
                    entry.expiry_warning_sent = True
                    self.lifecycle(entry, "reauthorizationRequired")

    # -- validation ----------------------------------------------------------------------------

    async def validate(self, url: str) -> bool:
        token = (
            "Validation: Testing client application reachability for subscription "
            f"Request-Id: {uuid.uuid4()}"
        )
        separator = "&" if urlsplit(url).query else "?"
        target = f"{url}{separator}{urlencode({'validationToken': token})}"
        try:
            response = await self.client().post(
                target,
                content=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self.validation_timeout,
            )
        except httpx.HTTPError:
            return False
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        return response.status_code == 200 and media == "text/plain" and response.text == token


def hub(state: EmulatorState) -> Hub:
    found = state.extra.get("graph.hub")
    if found is None:
        found = state.extra.setdefault("graph.hub", Hub(state))
    return found  # type: ignore[no-any-return]


def _default_folder_id(tenant: Tenant, owner_id: str) -> str | None:
    return next(
        (f.id for f in tenant.contact_folders.values() if f.owner_id == owner_id and f.is_default),
        None,
    )


def _notification(tenant: Tenant, entry: Entry, event: ChangeEvent) -> dict[str, Any] | None:
    sub = entry.subscription
    target = entry.target
    object_id = event.object_id
    resource_data: dict[str, Any]
    extra: dict[str, Any] = {}
    if target.kind in ("users", "groups"):
        kinds = ("user",) if target.kind == "users" else ("group", "membership")
        if event.kind not in kinds or (target.ids is not None and object_id not in target.ids):
            return None
        objects: dict[str, Any] = tenant.users if target.kind == "users" else tenant.groups
        hard = event.change_type == "deleted" and (
            event.removed_reason == "deleted" or object_id not in objects
        )
        change_type = "deleted" if hard else "updated"
        entity = "Users" if target.kind == "users" else "Groups"
        resource = f"{entity}/{object_id}"
        resource_data = {
            "@odata.type": f"#Microsoft.Graph.{entity[:-1]}",
            "@odata.id": resource,
            "id": object_id,
            "organizationId": tenant.id,
        }
        if event.kind == "membership" and event.member_id is not None:
            member: dict[str, Any] = {"id": event.member_id}
            if not event.added:
                member["@removed"] = {"reason": "deleted"}
            resource_data["members@delta"] = [member]
    elif target.kind == "contacts":
        if event.kind != "contact":
            return None
        owner_id = event.owner_id
        folder_id = event.folder_id
        if owner_id is None or owner_id != target.owner_id:
            return None
        wanted_folder = target.folder_id or _default_folder_id(tenant, owner_id)
        if folder_id != wanted_folder:
            return None
        change_type = event.change_type
        resource = f"Users/{owner_id}/Contacts/{object_id}"
        resource_data = {
            "@odata.type": "#Microsoft.Graph.Contact",
            "@odata.id": resource,
            "id": object_id,
        }
        folder = tenant.contact_folders.get(folder_id or "")
        contact = folder.contacts.get(object_id) if folder is not None else None
        if contact is not None:
            resource_data["@odata.etag"] = f'W/"{etag(contact)}"'
    elif target.kind == "presence":
        if event.kind != "presence" or target.ids is None or object_id not in target.ids:
            return None
        change_type = "updated"
        resource = f"communications/presences/{object_id}"
        # Basic presence notifications carry only the user id (changenotifications-for-presence.md).
        resource_data = {
            "@odata.id": f"users/{object_id}/presence",
            "@odata.type": "#microsoft.graph.presence",
            "id": object_id,
        }
        extra["organizationId"] = tenant.id
    else:
        return None
    if change_type not in entry.change_types:
        return None
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": iso(sub.expiration_date_time),
        "changeType": change_type,
        "resource": resource,
        "resourceData": resource_data,
        "clientState": sub.client_state,
        "tenantId": tenant.id,
        **extra,
    }


# --- routes ------------------------------------------------------------------------------------


def _permission(caller: Caller, target: Target) -> None:
    """subscription-post-subscriptions.md, "Permissions" (per supported resource)."""
    if target.kind == "users":
        require_permission(caller, ("User.Read.All",), ("User.Read.All",))
    elif target.kind == "groups":
        require_permission(caller, ("Group.Read.All",), ("Group.Read.All",))
    elif target.kind == "contacts":
        require_permission(caller, ("Contacts.Read",), ("Contacts.Read",))
    else:
        require_permission(caller, ("Presence.Read.All",), ())


def _check_url(request: GraphRequest, name: str, url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise _invalid(f"{name} is required.")
    parts = urlsplit(url)
    allow_http = bool(getattr(request.options, "allow_http_notifications", False))
    if parts.scheme.lower() == "https" and parts.netloc:
        return url
    if parts.scheme.lower() == "http" and parts.netloc and allow_http:
        return url
    raise _invalid(f"Invalid {name} '{url}': the URL must use the HTTPS protocol.")


def _check_expiration(target: Target, expiration: datetime, now: datetime) -> None:
    if expiration <= now:
        raise _invalid("Subscription expiration must be in the future.")
    limit = target.max_minutes
    if expiration - now > timedelta(minutes=limit):
        code = "ExtensionError" if target.kind == "contacts" else "InvalidRequest"
        raise GraphError(
            400, code, f"Subscription expiration can only be {limit} minutes in the future."
        )


def _change_types(target: Target, raw: Any) -> frozenset[str]:
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("changeType is required.")
    types = [t.strip() for t in raw.split(",") if t.strip()]
    for change_type in types:
        if change_type not in CHANGE_TYPES:
            raise _invalid(f"'{change_type}' is not a valid changeType.")
    allowed = {
        "users": ("updated", "deleted"),
        "groups": ("updated", "deleted"),
        "presence": ("updated",),
        "contacts": CHANGE_TYPES,
    }[target.kind]
    for change_type in types:
        if change_type not in allowed:
            raise _invalid(
                f"changeType '{change_type}' is not supported for this resource; "
                f"supported: {', '.join(allowed)}."
            )
    return frozenset(types)


def _visible(caller: Caller, entry: Entry) -> bool:
    sub = entry.subscription
    if sub.tenant_id != caller.tenant.id or sub.app_id != caller.app.app_id:
        return False
    if caller.user is not None:
        return entry.creator_id == caller.user.id
    return True


def _find(request: GraphRequest) -> Entry:
    caller = request.caller()
    entry = {e.id: e for e in hub(request.state).live()}.get(request.params["id"])
    if entry is None or not _visible(caller, entry):
        raise GraphError(
            404, "ResourceNotFound", f"The subscription '{request.params['id']}' was not found."
        )
    return entry


@router.route("POST", "/subscriptions")
async def create_subscription(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    payload = request.json()
    if not isinstance(payload, dict):
        raise _invalid("The body must be a subscription object.")
    resource = payload.get("resource")
    if not isinstance(resource, str) or not resource.strip():
        raise _invalid("resource is required.")
    target = parse_resource(resource)
    _permission(caller, target)
    tenant = caller.tenant
    if target.kind == "contacts":
        owner_key = target.owner_id or "me"
        owner = request.me() if owner_key.lower() == "me" else tenant.find_user(owner_key)
        if owner is None or owner.deleted_at is not None:
            raise GraphError(
                404, "ErrorInvalidUser", f"The requested user '{owner_key}' is invalid."
            )
        # Delegated: the signed-in user's own mailbox only (outlook-get-shared-contacts-folders.md:
        # change notifications are not supported for shared or delegated folders).
        if caller.user is not None and caller.user.id != owner.id:
            raise access_denied()
        target.owner_id = owner.id
    change_types = _change_types(target, payload.get("changeType"))
    notification_url = _check_url(request, "notificationUrl", payload.get("notificationUrl"))
    lifecycle_url = payload.get("lifecycleNotificationUrl")
    if lifecycle_url is not None:
        lifecycle_url = _check_url(request, "lifecycleNotificationUrl", lifecycle_url)
    if "expirationDateTime" not in payload:
        raise _invalid("expirationDateTime is required.")
    now = utcnow()
    expiration = parse_datetime(payload.get("expirationDateTime"))
    _check_expiration(target, expiration, now)
    client_state = payload.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise _invalid(f"clientState is a string of at most {MAX_CLIENT_STATE} characters.")
    tls = payload.get("latestSupportedTlsVersion") or "v1_2"
    if tls not in TLS_VERSIONS:
        raise _invalid(f"'{tls}' is not a valid latestSupportedTlsVersion.")
    include_data = bool(payload.get("includeResourceData", False))
    if include_data and not (
        payload.get("encryptionCertificate") and payload.get("encryptionCertificateId")
    ):
        raise _invalid(
            "encryptionCertificate and encryptionCertificateId are required when "
            "includeResourceData is true."
        )
    the_hub = hub(request.state)
    the_hub.ensure_running()
    if target.kind == "presence":
        if caller.user is None:
            raise access_denied()
        for entry in the_hub.live(now):
            sub = entry.subscription
            if (
                entry.target.kind == "presence"
                and sub.tenant_id == tenant.id
                and sub.app_id == caller.app.app_id
                and sub.signed_in_user_id == caller.user.id
            ):
                raise GraphError(
                    409,
                    "ExtensionError",
                    "Operation: Create; Exception: [Status Code: Conflict; Reason: A subscripton "
                    "already exists. It must be deleted before a another can be made.]",
                )
    for url in dict.fromkeys(u for u in (notification_url, lifecycle_url) if u):
        if not await the_hub.validate(url):
            raise _invalid(
                "Subscription validation request failed. Notification endpoint must respond with "
                "200 OK to validation request."
            )
    subscription = Subscription(
        id=str(uuid.uuid4()),
        tenant_id=tenant.id,
        app_id=caller.app.app_id,
        resource=resource,
        change_type=",".join(t for t in CHANGE_TYPES if t in change_types),
        notification_url=notification_url,
        lifecycle_notification_url=lifecycle_url,
        client_state=client_state,
        expiration_date_time=expiration,
        signed_in_user_id=caller.user.id if caller.user is not None else None,
        include_resource_data=include_data,
    )
    entry = Entry(
        subscription=subscription,
        target=target,
        change_types=change_types,
        creator_id=caller.user.id if caller.user is not None else caller.app.service_principal_id,
        latest_tls=tls,
        encryption_certificate=payload.get("encryptionCertificate"),
        encryption_certificate_id=payload.get("encryptionCertificateId"),
    )
    the_hub.entries[subscription.id] = entry
    the_hub.hook(tenant)
    body = {"@odata.context": request.context("subscriptions/$entity"), **entry.to_json()}
    return GraphResponse(201, body)


@router.route("GET", "/subscriptions")
async def list_subscriptions_route(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    entries = [e for e in hub(request.state).live() if _visible(caller, e)]
    values = [e.to_json(hide_client_state=True) for e in entries]
    return GraphResponse(200, {"@odata.context": request.context("subscriptions"), "value": values})


@router.route("GET", "/subscriptions/{id}")
async def get_subscription(request: GraphRequest) -> GraphResponse:
    entry = _find(request)
    return GraphResponse(
        200, {"@odata.context": request.context("subscriptions/$entity"), **entry.to_json()}
    )


@router.route("PATCH", "/subscriptions/{id}")
async def update_subscription(request: GraphRequest) -> GraphResponse:
    """Renew (and so reauthorize) a subscription: https://learn.microsoft.com/en-us/graph/api/subscription-update"""
    entry = _find(request)
    caller = request.caller()
    _permission(caller, entry.target)
    payload = request.json()
    if not isinstance(payload, dict):
        raise _invalid("The body must be a subscription object.")
    sub = entry.subscription
    if "expirationDateTime" in payload:
        expiration = parse_datetime(payload["expirationDateTime"])
        _check_expiration(entry.target, expiration, utcnow())
        sub.expiration_date_time = expiration
        entry.expiry_warning_sent = False
    if "notificationUrl" in payload:
        url = _check_url(request, "notificationUrl", payload["notificationUrl"])
        if url != sub.notification_url:
            the_hub = hub(request.state)
            the_hub.ensure_running()
            if not await the_hub.validate(url):
                raise _invalid(
                    "Subscription validation request failed. Notification endpoint must respond "
                    "with 200 OK to validation request."
                )
            sub.notification_url = url
    entry.reauthorize_by = None
    return GraphResponse(
        200, {"@odata.context": request.context("subscriptions/$entity"), **entry.to_json()}
    )


@router.route("DELETE", "/subscriptions/{id}")
async def delete_subscription(request: GraphRequest) -> GraphResponse:
    entry = _find(request)
    hub(request.state).entries.pop(entry.id, None)
    return GraphResponse(204)


@router.route("POST", "/subscriptions/{id}/reauthorize")
async def reauthorize_subscription(request: GraphRequest) -> GraphResponse:
    entry = _find(request)
    _permission(request.caller(), entry.target)
    entry.reauthorize_by = None
    return GraphResponse(204)


# --- control hooks (for the control API and tests) --------------------------------------------


def list_subscriptions(state: EmulatorState, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Every live subscription (optionally of one tenant), with its clientState and status."""
    now = utcnow()
    result = []
    for entry in hub(state).live(now):
        if tenant_id is not None and entry.subscription.tenant_id != tenant_id:
            continue
        body = entry.to_json()
        body["tenantId"] = entry.subscription.tenant_id
        body["status"] = (
            "paused"
            if entry.paused(now)
            else ("reauthorizationRequired" if entry.reauthorize_by is not None else "active")
        )
        result.append(body)
    return result


def trigger_lifecycle_event(state: EmulatorState, subscription_id: str, event: str) -> bool:
    """Send a lifecycle notification for a subscription: `reauthorizationRequired` (delivery then
    pauses after the grace period until the app reauthorizes or renews), `subscriptionRemoved` (the
    subscription is deleted) or `missed`. False when the subscription does not exist."""
    if event not in LIFECYCLE_EVENTS:
        raise ValueError(f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
    the_hub = hub(state)
    entry = the_hub.entries.get(subscription_id)
    if entry is None:
        return False
    if event == "reauthorizationRequired":
        entry.reauthorize_by = utcnow() + the_hub.reauthorization_grace
    the_hub.lifecycle(entry, event)
    if event == "subscriptionRemoved":
        the_hub.entries.pop(subscription_id, None)
    return True


def expire_subscription(state: EmulatorState, subscription_id: str) -> bool:
    """Make a subscription expire now (it stops delivering and disappears)."""
    entry = hub(state).entries.get(subscription_id)
    if entry is None:
        return False
    entry.subscription.expiration_date_time = utcnow()
    hub(state).live()
    return True


def configure(state: EmulatorState, **settings: Any) -> dict[str, Any]:
    """Tune delivery: batch_window, validation_timeout, delivery_timeout, retry_delays,
    reauthorization_lead / reauthorization_grace (seconds), tick, notification_ca."""
    the_hub = hub(state)
    for name, value in settings.items():
        if name in ("reauthorization_lead", "reauthorization_grace"):
            setattr(the_hub, name, timedelta(seconds=float(value)))
        elif name == "retry_delays":
            the_hub.retry_delays = tuple(float(v) for v in value)
        elif name in ("batch_window", "validation_timeout", "delivery_timeout", "tick"):
            setattr(the_hub, name, float(value))
        elif name == "notification_ca":
            the_hub.notification_ca = None if value is None else str(value)
        else:
            raise ValueError(f"unknown setting {name}")
    return {
        "batch_window": the_hub.batch_window,
        "validation_timeout": the_hub.validation_timeout,
        "delivery_timeout": the_hub.delivery_timeout,
        "retry_delays": list(the_hub.retry_delays),
        "reauthorization_lead": the_hub.reauthorization_lead.total_seconds(),
        "reauthorization_grace": the_hub.reauthorization_grace.total_seconds(),
        "tick": the_hub.tick,
        "notification_ca": the_hub.ca_path(),
    }


def deliveries(state: EmulatorState) -> list[dict[str, Any]]:
    """The notification POSTs made so far (url, value, status, attempts), oldest first."""
    return list(hub(state).deliveries)


async def shutdown(state: EmulatorState) -> None:
    """Stop the delivery tasks and close the HTTP client (the app's lifespan calls this)."""
    found = state.extra.get("graph.hub")
    if found is not None:
        await found.close()


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    yield
    await shutdown(app.state.emulator)
