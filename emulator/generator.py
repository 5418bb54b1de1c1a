"""A deterministic tenant generator: realistic users, groups, mailboxes, contacts and presence.

The same seed gives the same ids and data. The edge cases a directory sync meets are all there:
guests with `#EXT#` user principal names, disabled accounts, users without names or mail,
duplicate-looking mail addresses differing in case, businessPhones holding extensions as well as
real numbers, nested groups, Microsoft 365, security, distribution and mail-enabled security
groups, shared mailboxes and rooms, personal contact folders (some shared with the admin).

Generated objects exist "from the start": they carry version 0 and add nothing to the change log,
so an initial delta round returns them and later changes (through `mutations`) are the log.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from typing import Any

from emulator.state import Contact, ContactFolder, Group, Presence, Tenant, User

FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Sandra",
    "Mark",
    "Margaret",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Andrew",
    "Emily",
    "Paul",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Sharon",
    "Edward",
    "Laura",
    "Jeffrey",
    "Cynthia",
    "Ryan",
    "Dorothy",
    "Jacob",
    "Amy",
    "Gary",
    "Kathleen",
    "Nicholas",
    "Angela",
    "Eric",
    "Shirley",
    "Jonathan",
    "Emma",
    "Stephen",
    "Brenda",
    "Larry",
    "Pamela",
    "Justin",
    "Nicole",
    "Scott",
    "Anna",
    "Brandon",
    "Samantha",
    "Benjamin",
    "Katherine",
    "Samuel",
    "Christine",
    "Gregory",
    "Debra",
    "Alexander",
    "Rachel",
    "Patrick",
    "Carolyn",
    "Frank",
    "Janet",
    "Raymond",
    "Maria",
    "Jack",
    "Olivia",
    "Dennis",
    "Heather",
    "Jerry",
    "Helen",
    "Tyler",
    "Catherine",
    "Aaron",
    "Diane",
    "Jose",
    "Julie",
    "Adam",
    "Victoria",
    "Nathan",
    "Joyce",
    "Henry",
    "Lauren",
    "Zachary",
    "Kelly",
    "Douglas",
    "Christina",
    "Peter",
    "Ruth",
    "Kyle",
    "Joan",
    "Noah",
    "Virginia",
    "Ethan",
    "Judith",
    "Jeremy",
    "Evelyn",
    "Walter",
    "Hannah",
    "Christian",
    "Andrea",
    "Keith",
    "Megan",
    "Roger",
    "Cheryl",
    "Terry",
    "Jacqueline",
    "Austin",
    "Madison",
    "Sean",
    "Teresa",
    "Gerald",
    "Abigail",
    "Carl",
    "Sophia",
    "Harold",
    "Martha",
    "Dylan",
    "Sara",
    "Arthur",
    "Gloria",
    "Lawrence",
    "Janice",
    "Jordan",
    "Kathryn",
    "Jesse",
    "Ann",
    "Bryan",
    "Isabella",
    "Billy",
    "Judy",
    "Bruce",
    "Charlotte",
    "Gabriel",
    "Julia",
    "Joe",
    "Grace",
    "Logan",
    "Amber",
    "Alan",
    "Alice",
    "Juan",
    "Jean",
    "Albert",
    "Denise",
    "Willie",
    "Frances",
    "Elijah",
    "Danielle",
    "Wayne",
    "Marilyn",
    "Randy",
    "Natalie",
    "Vincent",
    "Diana",
    "Mason",
    "Brittany",
    "Roy",
    "Beverly",
    "Ralph",
    "Theresa",
    "Bobby",
    "Kayla",
    "Russell",
    "Alexis",
    "Bradley",
    "Lori",
    "Philip",
    "Adele",
    "Alex",
    "Allan",
    "Diego",
    "Grady",
    "Irvin",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Miriam",
    "Nestor",
    "Pradeep",
    "Priya",
    "Wei",
    "Yuki",
    "Hiroshi",
    "Mohammed",
    "Fatima",
    "Aisha",
    "Chen",
    "Li",
    "Ana",
    "Sofia",
    "Mateo",
    "Lucas",
    "Léa",
    "Zoë",
    "Björn",
    "Søren",
    "José",
    "François",
    "Łukasz",
    "Ngozi",
    "Oluwaseun",
    "Siobhan",
    "Eoin",
    "Dmitri",
    "Olga",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Jimenez",
    "Powell",
    "Jenkins",
    "Perry",
    "Russell",
    "Sullivan",
    "Bell",
    "Coleman",
    "Butler",
    "Henderson",
    "Barnes",
    "Gonzales",
    "Fisher",
    "Vasquez",
    "Simmons",
    "Romero",
    "Jordan",
    "Patterson",
    "Alexander",
    "Hamilton",
    "Graham",
    "Reynolds",
    "Griffin",
    "Wallace",
    "Moreno",
    "West",
    "Cole",
    "Hayes",
    "Bryant",
    "Herrera",
    "Gibson",
    "Ellis",
    "Tran",
    "Medina",
    "Aguilar",
    "Stevens",
    "Murray",
    "Ford",
    "Castro",
    "Marshall",
    "Owens",
    "Harrison",
    "Fernandez",
    "McDonald",
    "Woods",
    "Washington",
    "Kennedy",
    "Wells",
    "Vargas",
    "Henry",
    "Chen",
    "Freeman",
    "Webb",
    "Tucker",
    "Guzman",
    "Burns",
    "Crawford",
    "Olson",
    "Simpson",
    "Porter",
    "Hunter",
    "Gordon",
    "Mendez",
    "Silva",
    "Shaw",
    "Snyder",
    "Mason",
    "Dixon",
    "Munoz",
    "Hunt",
    "Hicks",
    "Holmes",
    "Palmer",
    "Wagner",
    "Black",
    "Robertson",
    "Boyd",
    "Rose",
    "Stone",
    "Salazar",
    "Fox",
    "Warren",
    "Mills",
    "Meyer",
    "Rice",
    "Schmidt",
    "Garza",
    "Daniels",
    "Ferguson",
    "Nichols",
    "Stephens",
    "Soto",
    "Weaver",
    "Ryan",
    "Gardner",
    "Payne",
    "Grant",
    "Dunn",
    "Kelley",
    "Spencer",
    "Hawkins",
    "Arnold",
    "Pierce",
    "Vance",
    "Wilber",
    "O'Brien",
    "Müller",
    "Nakamura",
    "Yamamoto",
    "Suzuki",
    "Wang",
    "Zhang",
    "Liu",
    "Singh",
    "Kumar",
    "Sharma",
    "Okafor",
    "Adeyemi",
    "Kowalski",
    "Nowak",
    "Johansson",
    "Andersen",
    "Dubois",
    "Rossi",
    "Russo",
    "Ferrari",
    "Novák",
    "Ivanova",
    "Petrov",
]
DEPARTMENTS = (
    "Sales",
    "Marketing",
    "Engineering",
    "Finance",
    "Human Resources",
    "Legal",
    "Operations",
    "Support",
    "IT",
    "Research",
    "Retail",
    "Executive Management",
)
JOB_TITLES = (
    "Sales Representative",
    "Account Manager",
    "Marketing Specialist",
    "Software Engineer",
    "Senior Software Engineer",
    "Product Manager",
    "Accountant",
    "HR Generalist",
    "Attorney",
    "Operations Analyst",
    "Support Engineer",
    "IT Administrator",
    "Research Scientist",
    "Store Manager",
    "Director",
    "Vice President",
    "Receptionist",
    "Consultant",
)
GUEST_DOMAINS = (
    "fabrikam.com",
    "northwindtraders.com",
    "adventure-works.com",
    "gmail.com",
    "outlook.com",
    "tailspintoys.com",
    "wingtiptoys.com",
    "litwareinc.com",
)
SHARED_MAILBOXES = (
    "Sales Team",
    "Support Desk",
    "Reception",
    "Accounts Payable",
    "Human Resources",
    "Marketing Events",
    "IT Helpdesk",
    "Press Office",
    "Partner Relations",
    "Facilities",
)
ROOMS = ("Conference Room Adams", "Conference Room Baker", "Board Room", "Training Room")
GROUP_TOPICS = (
    "Sales",
    "Marketing",
    "Engineering",
    "Finance",
    "HR",
    "Legal",
    "Operations",
    "Support",
    "IT",
    "Research",
    "Retail",
    "Executives",
    "Project Falcon",
    "Project Atlas",
    "Mark 8 Project",
    "Digital Initiative",
    "Safety Committee",
    "Social Club",
    "New Hires",
    "Managers",
    "Contractors",
    "Field Service",
    "Customer Success",
    "Design",
    "Data Science",
)
GROUP_REGIONS = ("", "EMEA", "Americas", "APAC", "Seattle", "London", "Munich", "Tokyo", "Sydney")
COMPANIES = (
    "Fabrikam",
    "Northwind Traders",
    "Adventure Works",
    "Tailspin Toys",
    "Wingtip Toys",
    "Litware",
    "Proseware",
    "Woodgrove Bank",
    "Contoso Pharmaceuticals",
    None,
)
AVAILABILITY_WEIGHTS = (
    ("Available", "Available", 35),
    ("Busy", "InACall", 10),
    ("Busy", "InAMeeting", 10),
    ("DoNotDisturb", "Presenting", 3),
    ("Away", "Away", 8),
    ("BeRightBack", "BeRightBack", 3),
    ("AvailableIdle", "Available", 4),
    ("Offline", "OffWork", 25),
    ("PresenceUnknown", "PresenceUnknown", 2),
)


def _ascii(value: str) -> str:
    table = str.maketrans(
        {
            "é": "e",
            "ë": "e",
            "ö": "o",
            "ø": "o",
            "ü": "u",
            "ç": "c",
            "á": "a",
            "ł": "l",
            "Ł": "L",
            "ä": "a",
            "Ø": "O",
            "'": "",
        }
    )
    return value.translate(table).lower()


class _Ids:
    """Deterministic ids from the generator's random stream, mixed with the tenant id: the same
    seed gives the same data in every tenant, but object ids stay unique across tenants, as
    directory object ids are."""

    def __init__(self, rng: random.Random, tenant_id: str) -> None:
        self.rng = rng
        digest = hashlib.sha256(tenant_id.encode()).digest()
        self.mask = int.from_bytes(digest[:16], "big")
        self.mail_mask = int.from_bytes(digest[:45].ljust(45, b"\0"), "big")

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128) ^ self.mask, version=4))

    def mail_id(self) -> str:
        raw = (self.rng.getrandbits(8 * 45) ^ self.mail_mask).to_bytes(45, "big")
        return "AAMk" + base64.urlsafe_b64encode(raw).decode().replace("-", "A").replace("_", "B")


def _phone(rng: random.Random) -> str:
    return f"+1 {rng.choice((206, 425, 312, 646, 415))} 555 {rng.randrange(100, 200):04d}"


def _business_phones(rng: random.Random, index: int) -> list[str]:
    roll = rng.random()
    if roll < 0.30:
        # A main number with the extension after "x" (the service takes the digits after it).
        return [f"+1 425 555 0100 x{1000 + index % 9000}"]
    if roll < 0.45:
        return [str(1000 + index % 9000)]  # the bare extension
    if roll < 0.50:
        return [f"+49 89 3176 {index % 10000:04d} ext {100 + index % 900}"]
    if roll < 0.75:
        return [_phone(rng)]
    if roll < 0.78:
        return [_phone(rng), f"{2000 + index % 8000}"]
    if roll < 0.80:
        return ["n/a"]  # an invalid value a number rule must reject
    return []


def generate(
    tenant: Tenant,
    users: int = 100_000,
    groups: int = 500,
    seed: int = 1,
    admin_password: str | None = None,
) -> None:
    """Fill `tenant` with `users` users (plus the admin, shared mailboxes and rooms) and `groups`
    groups. Deterministic for a given seed."""
    rng = random.Random(seed)
    ids = _Ids(rng, tenant.id)
    domain = tenant.domain

    admin = User(
        id=ids.guid(),
        display_name="MOD Administrator",
        user_principal_name=f"admin@{domain}",
        given_name="MOD",
        surname="Administrator",
        mail=f"admin@{domain}",
        job_title="IT Administrator",
        department="IT",
        business_phones=["+1 425 555 0100 x1000"],
        is_admin=True,
    )
    if admin_password:
        admin.password = admin_password
    tenant.users[admin.id] = admin
    tenant.presence[admin.id] = Presence("Available", "Available")

    taken_upns = {admin.user_principal_name}
    members: list[str] = []  # enabled member users: the pool for groups and contacts
    mails: list[tuple[str, str]] = []  # (user id, mail) of members, for case-twins
    presence_choices = [(a, b) for a, b, _ in AVAILABILITY_WEIGHTS]
    presence_weights = [w for _, _, w in AVAILABILITY_WEIGHTS]
    first_names, last_names = FIRST_NAMES, LAST_NAMES
    random_ = rng.random
    choice = rng.choice
    for index in range(users):
        first = choice(first_names)
        last = choice(last_names)
        local = f"{_ascii(first)}.{_ascii(last)}"
        roll = random_()
        if roll < 0.02:
            guest_domain = choice(GUEST_DOMAINS)
            external = f"{local}@{guest_domain}"
            upn = f"{local}_{guest_domain}#EXT#@{domain}"
            suffix = 2
            while upn in taken_upns:
                external = f"{local}{suffix}@{guest_domain}"
                upn = f"{local}{suffix}_{guest_domain}#EXT#@{domain}"
                suffix += 1
            taken_upns.add(upn)
            user = User(
                id=ids.guid(),
                display_name=f"{first} {last} ({guest_domain.split('.')[0].title()})",
                user_principal_name=upn,
                given_name=first,
                surname=last,
                mail=external,
                user_type="Guest",
            )
            tenant.users[user.id] = user
            continue

        upn = f"{local}@{domain}"
        suffix = 2
        while upn in taken_upns:
            upn = f"{local}{suffix}@{domain}"
            suffix += 1
        taken_upns.add(upn)
        mail: str | None = upn if random_() >= 0.04 else None
        given: str | None = first
        surname: str | None = last
        display: str | None = f"{first} {last}"
        shape = random_()
        if shape < 0.01:
            given = surname = None  # only a display name
        elif shape < 0.013:
            given = surname = display = None  # nothing but the UPN
        elif shape < 0.02:
            surname = None
        enabled = random_() >= 0.03
        user = User(
            id=ids.guid(),
            display_name=display,
            user_principal_name=upn,
            given_name=given,
            surname=surname,
            mail=mail,
            account_enabled=enabled,
            business_phones=_business_phones(rng, index),
            mobile_phone=_phone(rng) if random_() < 0.6 else None,
            job_title=choice(JOB_TITLES) if random_() < 0.85 else None,
            department=choice(DEPARTMENTS) if random_() < 0.8 else None,
            employee_id=f"E{100000 + index}" if random_() < 0.7 else None,
        )
        if random_() < 0.25:
            attributes: dict[str, str | None] = {"extensionAttribute1": str(2000 + index % 8000)}
            if random_() < 0.3:
                attributes[f"extensionAttribute{rng.randint(2, 15)}"] = choice(
                    ("Cost center 4711", "Building 7", "Contractor", "VIP", "x" + str(index))
                )
            user.extension_attributes = attributes
        tenant.users[user.id] = user
        if enabled:
            members.append(user.id)
            if mail:
                mails.append((user.id, mail))
            if random_() < 0.5:
                availability, activity = rng.choices(presence_choices, presence_weights)[0]
                tenant.presence[user.id] = Presence(availability, activity)

    _case_twins(tenant, rng, ids, mails, users, taken_upns)
    _mailboxes(tenant, rng, ids, members, admin, users)
    _personal_contacts(tenant, rng, ids, members, admin, users)
    _groups(tenant, rng, ids, members, admin, groups, users)


def _case_twins(
    tenant: Tenant,
    rng: random.Random,
    ids: _Ids,
    mails: list[tuple[str, str]],
    users: int,
    taken_upns: set[str],
) -> None:
    """Users whose mail differs from another's only in letter case (a guest or an alias)."""
    if not mails:
        return
    for _ in range(max(1, users // 1000) if users >= 10 else 0):
        _, mail = rng.choice(mails)
        local, _, host = mail.partition("@")
        twin = local.title() + "@" + host.upper() if rng.random() < 0.5 else mail.upper()
        upn = f"{local}.alt{rng.randrange(100, 999)}@{tenant.domain}"
        if upn in taken_upns:
            continue
        taken_upns.add(upn)
        user = User(
            id=ids.guid(),
            display_name=local.replace(".", " ").title(),
            user_principal_name=upn,
            given_name=local.split(".")[0].title(),
            surname=local.split(".")[-1].title(),
            mail=twin,
            business_phones=[f"{1000 + rng.randrange(9000)}"],
        )
        tenant.users[user.id] = user


def _contact(rng: random.Random, ids: _Ids) -> Contact:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    company = rng.choice(COMPANIES)
    roll = rng.random()
    given: str | None = first
    surname: str | None = last
    display: str | None = f"{first} {last}"
    if roll < 0.05:
        given = surname = display = None  # no name at all
    elif roll < 0.08:
        given = surname = None
        display = company
    mobile = _phone(rng) if rng.random() < 0.6 else None
    business = [_phone(rng)] if rng.random() < 0.5 else []
    home = [_phone(rng)] if rng.random() < 0.15 else []
    if rng.random() < 0.06:
        mobile, business, home = None, [], []  # no phone at all
    email_domain = (company or "example").lower().replace(" ", "") + ".com"
    emails = (
        [{"name": display or "", "address": f"{_ascii(first)}.{_ascii(last)}@{email_domain}"}]
        if rng.random() < 0.7
        else []
    )
    return Contact(
        id=ids.mail_id(),
        given_name=given,
        surname=surname,
        display_name=display,
        company_name=company,
        email_addresses=emails,
        mobile_phone=mobile,
        home_phones=home,
        business_phones=business,
    )


def _fill_folder(folder: ContactFolder, rng: random.Random, ids: _Ids, count: int) -> None:
    for _ in range(count):
        contact = _contact(rng, ids)
        folder.contacts[contact.id] = contact


def _mailboxes(
    tenant: Tenant,
    rng: random.Random,
    ids: _Ids,
    members: list[str],
    admin: User,
    users: int,
) -> None:
    """Shared mailboxes (disabled accounts with mail, userPurpose shared) with contacts, and
    rooms."""
    count = min(len(SHARED_MAILBOXES), max(2, users // 2000)) if users else 0
    for index, name in enumerate(SHARED_MAILBOXES[:count]):
        local = name.lower().replace(" ", "")
        mailbox = User(
            id=ids.guid(),
            display_name=name,
            user_principal_name=f"{local}@{tenant.domain}",
            mail=f"{local}@{tenant.domain}",
            account_enabled=False,
            user_purpose="shared",
        )
        tenant.users[mailbox.id] = mailbox
        # The admin is a member of every other mailbox: the rest are not readable by the admin.
        if index % 2 == 0:
            mailbox.mailbox_members.add(admin.id)
        if members:
            mailbox.mailbox_members.update(rng.sample(members, min(len(members), 3)))
        folder = ContactFolder(
            id=ids.mail_id(), owner_id=mailbox.id, display_name="Contacts", is_default=True
        )
        tenant.contact_folders[folder.id] = folder
        _fill_folder(folder, rng, ids, rng.randint(5, 40))
    for name in ROOMS[: min(len(ROOMS), max(0, users // 5000))]:
        local = name.lower().replace(" ", "")
        room = User(
            id=ids.guid(),
            display_name=name,
            user_principal_name=f"{local}@{tenant.domain}",
            mail=f"{local}@{tenant.domain}",
            account_enabled=False,
            user_purpose="room",
        )
        tenant.users[room.id] = room


def _personal_contacts(
    tenant: Tenant,
    rng: random.Random,
    ids: _Ids,
    members: list[str],
    admin: User,
    users: int,
) -> None:
    """Default and extra contact folders for some users; some shared with the admin."""
    owners = [admin.id, *rng.sample(members, min(len(members), max(0, users // 100), 1000))]
    for index, owner_id in enumerate(owners):
        folder = ContactFolder(
            id=ids.mail_id(), owner_id=owner_id, display_name="Contacts", is_default=True
        )
        tenant.contact_folders[folder.id] = folder
        _fill_folder(folder, rng, ids, rng.randint(1, 12))
        if owner_id != admin.id and index % 3 != 0:
            folder.shared_with.add(admin.id)  # two thirds shared with the admin, a third not
        if rng.random() < 0.2:
            extra = ContactFolder(
                id=ids.mail_id(),
                owner_id=owner_id,
                display_name=rng.choice(("Customers", "Suppliers", "Family", "Partners")),
            )
            tenant.contact_folders[extra.id] = extra
            _fill_folder(extra, rng, ids, rng.randint(1, 8))
            if rng.random() < 0.5 and owner_id != admin.id:
                extra.shared_with.add(admin.id)


def _group_sizes(rng: random.Random, groups: int, users: int) -> list[int]:
    sizes = []
    for _ in range(groups):
        roll = rng.random()
        if roll < 0.55:
            size = rng.randint(2, 25)
        elif roll < 0.85:
            size = rng.randint(25, 200)
        elif roll < 0.97:
            size = rng.randint(200, 1500)
        else:
            size = rng.randint(1500, 5000)
        sizes.append(min(size, users))
    if groups and users >= 50_000:
        sizes[0] = 10_000  # "All Staff"-like: one very large group
    return sizes


def _groups(
    tenant: Tenant,
    rng: random.Random,
    ids: _Ids,
    members: list[str],
    admin: User,
    groups: int,
    users: int,
) -> None:
    sizes = _group_sizes(rng, groups, len(members))
    made: list[Group] = []
    taken_names: set[str] = set()
    for index, size in enumerate(sizes):
        topic = rng.choice(GROUP_TOPICS)
        region = rng.choice(GROUP_REGIONS)
        roll = rng.random()
        if index == 0 and users >= 50_000:
            kind, base = "unified", "All Company"
        elif roll < 0.45:
            kind, base = "security", f"SG-{topic}"
        elif roll < 0.75:
            kind, base = "unified", topic
        elif roll < 0.90:
            kind, base = "distribution", f"DL {topic}"
        else:
            kind, base = "mail_security", f"MSG {topic}"
        name = f"{base} {region}".strip()
        number = 2
        unique = name
        while unique in taken_names:
            unique = f"{name} {number}"
            number += 1
        taken_names.add(unique)
        nickname = "".join(ch for ch in _ascii(unique) if ch.isalnum())
        mail = f"{nickname}@{tenant.domain}"
        fields: dict[str, Any]
        if kind == "unified":
            fields = {
                "mail": mail,
                "mail_enabled": True,
                "security_enabled": False,
                "group_types": ["Unified"],
            }
        elif kind == "security":
            fields = {"mail": None, "mail_enabled": False, "security_enabled": True}
        elif kind == "distribution":
            fields = {"mail": mail, "mail_enabled": True, "security_enabled": False}
        else:
            fields = {"mail": mail, "mail_enabled": True, "security_enabled": True}
        group = Group(
            id=ids.guid(),
            display_name=unique,
            description=f"{unique} ({kind.replace('_', ' ')})" if rng.random() < 0.7 else None,
            **fields,
        )
        if members and size:
            group.member_ids.update(rng.sample(members, size))
        if rng.random() < 0.1:
            group.member_ids.add(admin.id)
        tenant.groups[group.id] = group
        made.append(group)
    # Nesting: a group may contain groups made before it, so there are no cycles.
    for index, group in enumerate(made):
        if index >= 2 and rng.random() < 0.12:
            for child in rng.sample(made[:index], min(index, rng.randint(1, 3))):
                group.member_ids.add(child.id)


def load_contacts(
    tenant: Tenant,
    *,
    owners: list[str],
    per_owner: int,
    share_with: str | None,
    mailboxes: int = 0,
    per_mailbox: int = 0,
    member: str | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Contacts at scale, for benchmarks: `per_owner` contacts in the default folder of each of
    `owners` (shared with `share_with`), and `mailboxes` new shared mailboxes of `per_mailbox`
    contacts each (with `member` as a member). Deterministic; like generated data, nothing goes to
    the change log (it exists "from the start")."""
    rng = random.Random(seed)
    ids = _Ids(rng, f"{tenant.id}:contacts:{seed}")
    defaults = {f.owner_id: f for f in tenant.contact_folders.values() if f.is_default}
    for owner_id in owners:
        if owner_id not in tenant.users:
            raise KeyError(owner_id)
        folder = defaults.get(owner_id)
        if folder is None:
            folder = ContactFolder(
                id=ids.mail_id(), owner_id=owner_id, display_name="Contacts", is_default=True
            )
            tenant.contact_folders[folder.id] = folder
        _fill_folder(folder, rng, ids, per_owner)
        if share_with:
            folder.shared_with.add(share_with)
    made = []
    for index in range(mailboxes):
        local = f"bulkdesk{seed}x{index}"
        mailbox = User(
            id=ids.guid(),
            display_name=f"Bulk Desk {seed}-{index}",
            user_principal_name=f"{local}@{tenant.domain}",
            mail=f"{local}@{tenant.domain}",
            account_enabled=False,
            user_purpose="shared",
        )
        tenant.users[mailbox.id] = mailbox
        if member:
            mailbox.mailbox_members.add(member)
        folder = ContactFolder(
            id=ids.mail_id(), owner_id=mailbox.id, display_name="Contacts", is_default=True
        )
        tenant.contact_folders[folder.id] = folder
        _fill_folder(folder, rng, ids, per_mailbox)
        made.append(mailbox.id)
    return {"owners": len(owners), "mailboxes": made}
