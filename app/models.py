"""Every table, imported in one place for Alembic and the test schema."""

from app.db import Base
from app.directory.models import (
    Contact,
    Extension,
    ExtensionGroup,
    ExtensionGroupMember,
    ExtensionPresence,
    Phonebook,
    PhonebookVisibility,
    TeamsPresenceSetting,
)
from app.integration.models import Integration, OAuthState, SyncRule, TokenCache
from app.notifications.models import GraphSubscription, NotificationEvent, PendingChanges
from app.presence.models import PresenceState
from app.runs.models import DeltaLink, Outbox, SyncChange, SyncFailure, SyncRun
from app.scheduling.models import ScheduleFire
from app.sso.models import SsoCode
from app.tenants.models import ApiKey, Pbx

__all__ = [
    "ApiKey",
    "Base",
    "Contact",
    "DeltaLink",
    "Extension",
    "ExtensionGroup",
    "ExtensionGroupMember",
    "ExtensionPresence",
    "GraphSubscription",
    "Integration",
    "NotificationEvent",
    "OAuthState",
    "Outbox",
    "Pbx",
    "PendingChanges",
    "Phonebook",
    "PhonebookVisibility",
    "PresenceState",
    "ScheduleFire",
    "SsoCode",
    "SyncChange",
    "SyncFailure",
    "SyncRule",
    "SyncRun",
    "TeamsPresenceSetting",
    "TokenCache",
]
