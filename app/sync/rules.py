"""A run's rules, read and converted once: the API's rule sections to the planners' rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.integration import repository as integ_repo
from app.integration.models import SyncRule
from app.integration.schemas import (
    ContactsSyncRules,
    DeletionGuard,
    GroupSyncRules,
    UserSyncRules,
)
from app.sync.plan_groups import GroupRules
from app.sync.plan_users import UserRules


def user_rules(config: dict[str, Any]) -> UserRules:
    cfg = UserSyncRules.model_validate(config)
    return UserRules(
        range_mode=cfg.range.mode,
        user_types=frozenset(cfg.range.user_types),
        group_ids=frozenset(cfg.range.group_ids),
        auto_delete_out_of_range=cfg.auto_delete_out_of_range,
        number_mode=cfg.number.mode,
        number_start=cfg.number.start,
        number_property=cfg.number.property,
        delete_when=frozenset(cfg.delete_when),
        associate_by_email=cfg.associate_by_email,
        send_welcome_email=cfg.send_welcome_email,
    )


def group_rules(config: dict[str, Any]) -> GroupRules:
    cfg = GroupSyncRules.model_validate(config)
    return GroupRules(
        range_mode=cfg.range.mode,
        types=frozenset(cfg.range.types),
        group_ids=frozenset(cfg.range.group_ids),
        auto_delete_out_of_range=cfg.auto_delete_out_of_range,
    )


@dataclass(frozen=True)
class RunRules:
    """The sections as they were when the run started."""

    sections: dict[str, SyncRule]
    guard: dict[str, Any]
    users: UserRules | None
    groups: GroupRules | None
    contacts: ContactsSyncRules | None = None

    def active(self, section: str) -> SyncRule | None:
        rule = self.sections.get(section)
        return rule if rule is not None and rule.state == "active" else None


async def load_rules(session: AsyncSession, pbx_id: str) -> RunRules:
    sections = await integ_repo.rules(session, pbx_id)
    guard = DeletionGuard.model_validate(
        sections["deletion_guard"].config if "deletion_guard" in sections else {}
    ).model_dump()
    users = sections.get("user_sync")
    groups = sections.get("group_sync")
    contacts = sections.get("contacts_sync")
    return RunRules(
        sections=sections,
        guard=guard,
        users=user_rules(users.config) if users is not None and users.state == "active" else None,
        groups=group_rules(groups.config)
        if groups is not None and groups.state == "active"
        else None,
        contacts=ContactsSyncRules.model_validate(contacts.config)
        if contacts is not None and contacts.state == "active"
        else None,
    )
