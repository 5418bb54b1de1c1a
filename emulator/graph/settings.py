"""Per-tenant knobs of the Graph routes that the control API (and tests) can turn.

- `set_delta_replay_rate`: the share of objects a delta round returns twice. Graph warns that
  "the same change appears in subsequent responses" and that "a single entity will be contained
  multiple times in the response" (https://learn.microsoft.com/en-us/graph/delta-query-overview,
  "Replays"); which objects are replayed is a deterministic function of the object id and the
  round, so a test can rely on it.
- `force_delta_resync`: every delta token issued so far answers `410 Gone` with a `Location` header
  to start over ("Synchronization reset" in the same page). Expired tokens (older than
  `Tenant.min_valid_delta_seq`) answer `syncStateNotFound` instead ("Token duration").
- `set_mailbox_settings_for_members(False)`: a delegated read of another mailbox's settings is
  refused (403 ErrorAccessDenied) even for a member of that (shared) mailbox, as many real tenants
  answer; the default lets members read them.
- `set_shared_contacts_delta(False)`: a delegated contacts delta on someone else's folder is refused
  (403 ErrorAccessDenied): Graph documents shared contact folders (Contacts.Read.Shared) for plain
  reads only. The default answers it.
"""

from __future__ import annotations

import hashlib

from emulator.state import Tenant

REPLAY_RATE = "graph.delta_replay_rate"
RESET_GENERATION = "graph.delta_reset_generation"
EXPIRY_SEEN = "graph.delta_expiry_seen"
EXPIRY_EPOCH = "graph.delta_expiry_epoch"
MAILBOX_SETTINGS_FOR_MEMBERS = "graph.mailbox_settings_for_members"
SHARED_CONTACTS_DELTA = "graph.shared_contacts_delta"


def set_mailbox_settings_for_members(tenant: Tenant, allowed: bool) -> None:
    tenant.extra[MAILBOX_SETTINGS_FOR_MEMBERS] = bool(allowed)


def mailbox_settings_for_members(tenant: Tenant) -> bool:
    return bool(tenant.extra.get(MAILBOX_SETTINGS_FOR_MEMBERS, True))


def set_shared_contacts_delta(tenant: Tenant, allowed: bool) -> None:
    tenant.extra[SHARED_CONTACTS_DELTA] = bool(allowed)


def shared_contacts_delta(tenant: Tenant) -> bool:
    return bool(tenant.extra.get(SHARED_CONTACTS_DELTA, True))


def set_delta_replay_rate(tenant: Tenant, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError("the replay rate is a share between 0 and 1")
    tenant.extra[REPLAY_RATE] = float(rate)


def delta_replay_rate(tenant: Tenant) -> float:
    return float(tenant.extra.get(REPLAY_RATE, 0.0))


def replayed(object_id: str, round_seq: int, rate: float) -> bool:
    """Whether `object_id` is replayed in the delta round that ends at `round_seq`."""
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(f"{object_id}:{round_seq}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def force_delta_resync(tenant: Tenant) -> int:
    """Make every delta token issued up to now answer 410 Gone (a synchronization reset)."""
    generation = reset_generation(tenant) + 1
    tenant.extra[RESET_GENERATION] = generation
    return generation


def reset_generation(tenant: Tenant) -> int:
    return int(tenant.extra.get(RESET_GENERATION, 0))


def expiry_epoch(tenant: Tenant) -> int:
    """A counter that moves each time `Tenant.min_valid_delta_seq` changes. Tokens carry the
    epoch they were issued in: a token is expired when it predates the latest change and its
    position is older than `min_valid_delta_seq`, while a full resync right after an expiry
    (same position, newer epoch) gets valid tokens."""
    current = tenant.min_valid_delta_seq
    if tenant.extra.get(EXPIRY_SEEN) != current:
        tenant.extra[EXPIRY_SEEN] = current
        tenant.extra[EXPIRY_EPOCH] = int(tenant.extra.get(EXPIRY_EPOCH, 0)) + 1
    return int(tenant.extra[EXPIRY_EPOCH])
