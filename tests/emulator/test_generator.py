"""The tenant generator: deterministic, realistic, and full of the edge cases a sync meets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from emulator.generator import generate
from emulator.state import Tenant
from tests.untraced import untraced


def generated(users: int, groups: int, seed: int = 1, tenant_id: str = "t") -> Tenant:
    tenant = Tenant(id=tenant_id, display_name="Contoso", domain="contoso.onmicrosoft.com")
    generate(tenant, users=users, groups=groups, seed=seed)
    return tenant


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return generated(5000, 120, seed=3)


def snapshot(tenant: Tenant) -> tuple[object, ...]:
    return (
        [(u.id, u.user_principal_name, u.mail, u.business_phones) for u in tenant.users.values()],
        [(g.id, g.display_name, sorted(g.member_ids)) for g in tenant.groups.values()],
        [(f.id, f.owner_id, sorted(f.contacts)) for f in tenant.contact_folders.values()],
        sorted((k, p.availability) for k, p in tenant.presence.items()),
    )


def test_same_seed_same_tenant_other_seed_other_tenant() -> None:
    assert snapshot(generated(800, 30, seed=5)) == snapshot(generated(800, 30, seed=5))
    assert snapshot(generated(800, 30, seed=5)) != snapshot(generated(800, 30, seed=6))


def test_object_ids_are_unique_across_tenants_with_the_same_seed() -> None:
    first, second = generated(200, 10, tenant_id="t1"), generated(200, 10, tenant_id="t2")
    assert not set(first.users) & set(second.users)
    assert not set(first.groups) & set(second.groups)
    upns = [u.user_principal_name for u in first.users.values()]
    assert upns == [u.user_principal_name for u in second.users.values()]  # same data


def test_admin_and_unique_upns(tenant: Tenant) -> None:
    admin = tenant.find_user("admin@contoso.onmicrosoft.com")
    assert admin is not None and admin.is_admin and admin.account_enabled
    upns = [u.user_principal_name.lower() for u in tenant.users.values()]
    assert len(upns) == len(set(upns))
    mails = [u.mail for u in tenant.users.values() if u.user_type == "Member" and u.mail]
    assert any(re.fullmatch(r"[a-z]+\.[a-z]+@contoso\.onmicrosoft\.com", m) for m in mails)


def test_guests_have_ext_upns(tenant: Tenant) -> None:
    guests = [u for u in tenant.users.values() if u.user_type == "Guest"]
    assert len(guests) > 20
    for guest in guests:
        local, _, host = guest.user_principal_name.partition("#EXT#@")
        assert host == "contoso.onmicrosoft.com"
        assert guest.mail is not None and local == guest.mail.replace("@", "_")


def test_disabled_and_nameless_users(tenant: Tenant) -> None:
    users = [u for u in tenant.users.values() if u.user_purpose == "user"]
    disabled = sum(not u.account_enabled for u in users) / len(users)
    assert 0.015 < disabled < 0.05
    assert any(u.given_name is None and u.surname is None and u.display_name for u in users)
    assert any(u.display_name is None for u in users)
    assert any(u.mail is None for u in users)


def test_mail_addresses_differing_only_in_case(tenant: Tenant) -> None:
    by_lower = Counter(u.mail.lower() for u in tenant.users.values() if u.mail)
    twins = [m for m, n in by_lower.items() if n > 1]
    assert twins
    spellings = {u.mail for u in tenant.users.values() if u.mail and u.mail.lower() == twins[0]}
    assert len(spellings) > 1


def test_business_phones_hold_extensions_and_real_numbers(tenant: Tenant) -> None:
    phones = [p for u in tenant.users.values() for p in u.business_phones]
    assert any(re.fullmatch(r"\+1 425 555 0100 x\d{4}", p) for p in phones)
    assert any(re.fullmatch(r"\d{4}", p) for p in phones)
    assert any(re.fullmatch(r"\+\d[\d ]+", p) for p in phones)
    assert any(u.mobile_phone for u in tenant.users.values())
    assert any(u.job_title for u in tenant.users.values())
    assert any(u.employee_id for u in tenant.users.values())
    attributes = [u.extension_attributes for u in tenant.users.values() if u.extension_attributes]
    assert any("extensionAttribute1" in a for a in attributes)


def test_group_kinds_and_nesting_without_cycles(tenant: Tenant) -> None:
    groups = list(tenant.groups.values())
    unified = [g for g in groups if g.group_types == ["Unified"]]
    security = [g for g in groups if g.security_enabled and not g.mail_enabled]
    distribution = [
        g for g in groups if g.mail_enabled and not g.security_enabled and not g.group_types
    ]
    mail_security = [g for g in groups if g.mail_enabled and g.security_enabled]
    assert unified and security and distribution and mail_security
    assert all(g.mail and g.mail_enabled for g in unified)
    nested = [g for g in groups if any(m in tenant.groups for m in g.member_ids)]
    assert nested

    def reaches_itself(start: str) -> bool:
        pending, seen = [start], set()
        while pending:
            for member in tenant.groups[pending.pop()].member_ids:
                if member == start:
                    return True
                if member in tenant.groups and member not in seen:
                    seen.add(member)
                    pending.append(member)
        return False

    assert not any(reaches_itself(g.id) for g in nested)


def test_shared_mailboxes_with_contacts_some_open_to_the_admin(tenant: Tenant) -> None:
    admin = tenant.find_user("admin@contoso.onmicrosoft.com")
    assert admin is not None
    shared = [u for u in tenant.users.values() if u.user_purpose == "shared"]
    assert shared
    assert all(not u.account_enabled and u.mail for u in shared)
    assert any(admin.id in u.mailbox_members for u in shared)
    assert any(admin.id not in u.mailbox_members for u in shared)
    folders = [f for f in tenant.contact_folders.values() if f.owner_id in {u.id for u in shared}]
    assert all(f.is_default and f.contacts for f in folders)


def test_personal_contacts_shared_and_not_with_gaps(tenant: Tenant) -> None:
    admin = tenant.find_user("admin@contoso.onmicrosoft.com")
    assert admin is not None
    personal = [
        f
        for f in tenant.contact_folders.values()
        if tenant.users[f.owner_id].user_purpose == "user" and f.owner_id != admin.id
    ]
    assert any(admin.id in f.shared_with for f in personal)
    assert any(admin.id not in f.shared_with for f in personal)
    assert any(not f.is_default for f in personal)  # extra folders besides "Contacts"
    contacts = [c for f in tenant.contact_folders.values() for c in f.contacts.values()]
    assert any(c.display_name is None and c.given_name is None for c in contacts)
    assert any(not (c.mobile_phone or c.business_phones or c.home_phones) for c in contacts)


def test_presence_for_users(tenant: Tenant) -> None:
    availabilities = {p.availability for p in tenant.presence.values()}
    assert {"Available", "Busy", "Offline"} <= availabilities
    assert all(uid in tenant.users for uid in tenant.presence)


def test_one_hundred_thousand_users() -> None:
    with untraced():  # the emulator's code: coverage measures the service only
        big = generated(100_000, 500, seed=1)

    people = [u for u in big.users.values() if u.user_purpose == "user"]
    assert len(people) == 100_000 + 1 + 100  # the generated users, the admin, the case twins
    assert len(big.groups) == 500
    sizes = sorted((len(g.member_ids) for g in big.groups.values()), reverse=True)
    assert 10_000 <= sizes[0] <= 10_010  # one very large group
    assert sum(sizes) > 100_000
    assert len({u.user_principal_name for u in big.users.values()}) == len(big.users)
