"""OData query options as Graph applies them to directory objects and Outlook items.

- `$select`, `$top`, `$orderby`, `$filter`, `$search`, `$count`: https://learn.microsoft.com/en-us/graph/query-parameters
- Which filters need the advanced query parameters (`ConsistencyLevel: eventual` and
  `$count=true`) and the errors for the ones that lack them:
  https://learn.microsoft.com/en-us/graph/aad-advanced-queries
- Paging with an opaque `$skiptoken` in `@odata.nextLink`: https://learn.microsoft.com/en-us/graph/paging
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emulator.graph.http import GraphError, GraphRequest, bad_request
from emulator.state import EmulatorState

Getter = Callable[[Any], Any]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999


@dataclass
class Resource:
    """How an entity type answers query options: its properties and what each supports."""

    name: str  # "User", as in Graph's "... of resource 'User'" errors
    type_name: str  # "microsoft.graph.user"
    getters: dict[str, Getter]
    default_select: tuple[str, ...]
    # property -> operators: eq, ne, in, startswith, endswith, any (lambda over a collection)
    filterable: dict[str, frozenset[str]] = field(default_factory=dict)
    sortable: frozenset[str] = frozenset()
    searchable: frozenset[str] = frozenset()
    # Properties that a collection can't return, only a single entity (user-list.md).
    single_only: frozenset[str] = frozenset()
    unknown_property_code: str = "Request_BadRequest"
    # Python expressions over `o` for the properties, when given: projections of many objects
    # (a page of 999 users) then run as one compiled dict display instead of a call per property.
    expressions: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, Any] = field(default_factory=dict)
    _lower: dict[str, str] = field(default_factory=dict)
    _projectors: dict[tuple[str, ...], Callable[[Any], dict[str, Any]]] = field(
        default_factory=dict
    )

    @classmethod
    def from_expressions(
        cls, expressions: dict[str, str], namespace: dict[str, Any], **kwargs: Any
    ) -> Resource:
        getters = {
            name: _compile(f"lambda o: {expr}", namespace) for name, expr in expressions.items()
        }
        return cls(getters=getters, expressions=expressions, namespace=namespace, **kwargs)

    def projector(self, names: Iterable[str]) -> Callable[[Any], dict[str, Any]]:
        """A function that renders an object with the properties `names`, in that order."""
        key = tuple(n for n in names if n in self.getters)
        found = self._projectors.get(key)
        if found is None:
            if all(n in self.expressions for n in key):
                items = ", ".join(f"{n!r}: {self.expressions[n]}" for n in key)
                found = _compile(f"lambda o: {{{items}}}", self.namespace)
            else:
                fields = self.fields(key)
                found = lambda o: project(o, fields)  # noqa: E731
            self._projectors[key] = found
        return found

    def canonical(self, name: str) -> str | None:
        if not self._lower:
            self._lower = {n.lower(): n for n in (*self.getters, *self.single_only)}
        return self._lower.get(name.lower())

    def unknown(self, name: str) -> GraphError:
        return bad_request(
            f"Could not find a property named '{name}' on type '{self.type_name}'.",
            self.unknown_property_code,
        )

    def fields(self, names: Iterable[str]) -> list[tuple[str, Getter]]:
        return [(n, self.getters[n]) for n in names if n in self.getters]


def _compile(source: str, namespace: dict[str, Any]) -> Any:
    # Only ever the fixed expressions of emulator.graph.model, never request input.
    return eval(source, dict(namespace))  # noqa: S307


def project(obj: Any, fields: list[tuple[str, Getter]]) -> dict[str, Any]:
    return {name: getter(obj) for name, getter in fields}


# --- $select ---------------------------------------------------------------------------------


def parse_select(
    request: GraphRequest, resource: Resource, collection: bool, extra: Iterable[str] = ()
) -> list[str] | None:
    """The selected property names (canonical spelling), or None for the default set.

    https://learn.microsoft.com/en-us/graph/api/user-list ("Attempting to use `$select` on the
    `/users` collection to retrieve properties that cannot be returned within a user collection
    (for example, the request `../users?$select=aboutMe`) returns a `501 Not Implemented` error
    code"; mailboxSettings is one of them).
    """
    raw = request.query.get("$select")
    if raw is None or not raw.strip():
        return None
    names: list[str] = []
    allowed_extra = {e.lower(): e for e in extra}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() in allowed_extra:
            names.append(allowed_extra[part.lower()])
            continue
        name = resource.canonical(part)
        if name is None:
            raise resource.unknown(part)
        if collection and name in resource.single_only:
            raise GraphError(501, "NotImplemented", "This operation target is not yet supported.")
        if name not in names:
            names.append(name)
    return names


def select_suffix(names: list[str] | None) -> str:
    """`users(displayName,mail)` style context of a selection."""
    return f"({','.join(names)})" if names else ""


# --- $top, $skip -----------------------------------------------------------------------------


def parse_top(
    request: GraphRequest, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """Directory page size: https://learn.microsoft.com/en-us/graph/paging; outside 1..999 Graph
    answers 400 Request_UnsupportedQuery "Invalid page size specified: '1000'. Must be between 1
    and 999 inclusive."."""
    raw = request.query.get("$top")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= maximum:
        raise bad_request(
            f"Invalid page size specified: '{raw}'. Must be between 1 and {maximum} inclusive.",
            "Request_UnsupportedQuery",
        )
    return value


def reject_skip(request: GraphRequest) -> None:
    # user-list.md: "`$skip` isn't supported."
    if "$skip" in request.query:
        raise bad_request("'$skip' is not supported by the service.")


def reject_expand(request: GraphRequest) -> None:
    if "$expand" in request.query:
        raise bad_request("Expand is not supported by the emulator for this resource.")


# --- $count ----------------------------------------------------------------------------------


def wants_count(request: GraphRequest) -> bool:
    """`$count=true` counts only in advanced queries; without `ConsistencyLevel: eventual` Graph
    "silently ignores the `$count` query parameter" (aad-advanced-queries.md, "Error handling for
    advanced queries on directory objects")."""
    value = request.query.get("$count")
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise bad_request(f"Invalid value '{value}' for $count.")
    return value.lower() == "true" and request.eventual


def advanced(request: GraphRequest) -> bool:
    """Both advanced query parameters present: `ConsistencyLevel: eventual` and `$count=true`."""
    return request.eventual and (request.query.get("$count") or "").lower() == "true"


def require_count_segment(request: GraphRequest) -> None:
    # aad-advanced-queries.md: GET /users/$count without the header answers this error.
    if not request.eventual:
        raise bad_request("$count is not currently supported.")


def needs_advanced(operator: str) -> GraphError:
    # aad-advanced-queries.md, "Error handling for advanced queries on directory objects".
    return GraphError(
        400,
        "Request_UnsupportedQuery",
        f"Operator '{operator}' is not supported because the required parameters might be "
        "missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. "
        "Refer to https://aka.ms/graph-docs/advanced-queries for more information",
    )


# --- $filter ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
     |(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
     |(?P<num>-?\d+(?:\.\d+)?)(?![\w])
     |(?P<name>[A-Za-z_$][\w.$]*)
     |(?P<punct>[(),/:])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "in", "true", "false", "null"}
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"startswith", "endswith", "contains"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # str, value, name, punct, kw
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _syntax(text, pos)
        start = match.start(match.lastgroup or 0)
        kind = match.lastgroup
        raw = match.group(kind or 0)
        if kind == "str":
            tokens.append(_Tok("value", raw[1:-1].replace("''", "'"), start))
        elif kind == "guid":
            tokens.append(_Tok("value", raw, start))
        elif kind == "num":
            tokens.append(_Tok("value", float(raw) if "." in raw else int(raw), start))
        elif kind == "name" and raw.lower() in _KEYWORDS:
            word = raw.lower()
            if word in ("true", "false"):
                tokens.append(_Tok("value", word == "true", start))
            elif word == "null":
                tokens.append(_Tok("value", None, start))
            else:
                tokens.append(_Tok("kw", word, start))
        elif kind == "name":
            tokens.append(_Tok("name", raw, start))
        else:
            tokens.append(_Tok("punct", raw, start))
        pos = match.end()
    return tokens


def _syntax(text: str, pos: int) -> GraphError:
    return bad_request(
        f"Invalid filter clause: Syntax error at position {pos} in '{text}'.", "BadRequest"
    )


# AST nodes are tuples: ("and"|"or", a, b), ("not", a), ("cmp", op, path, value),
# ("in", path, values), ("func", name, path, value), ("any", path, var, inner)
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise _syntax(self.text, len(self.text))
        self.i += 1
        return tok

    def expect(self, kind: str, value: Any = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (value is not None and tok.value != value):
            raise _syntax(self.text, tok.pos)
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == kind and (value is None or tok.value == value)

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise _syntax(self.text, self.take().pos)
        return node

    def expr(self) -> Node:
        node = self.conj()
        while self.at("kw", "or"):
            self.take()
            node = ("or", node, self.conj())
        return node

    def conj(self) -> Node:
        node = self.unary()
        while self.at("kw", "and"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("kw", "not"):
            self.take()
            return ("not", self.unary())
        return self.primary()

    def path(self) -> list[str]:
        segments = [self.expect("name").value]
        while self.at("punct", "/"):
            self.take()
            tok = self.take()
            if tok.kind not in ("name", "kw"):
                raise _syntax(self.text, tok.pos)
            segments.append(str(tok.value))
        return segments

    def value(self) -> Any:
        tok = self.take()
        if tok.kind != "value":
            raise _syntax(self.text, tok.pos)
        return tok.value

    def primary(self) -> Node:
        if self.at("punct", "("):
            self.take()
            node = self.expr()
            self.expect("punct", ")")
            return node
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.value.lower() in _FUNCTIONS:
            nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
            if nxt is not None and nxt.kind == "punct" and nxt.value == "(":
                self.take()
                self.take()
                target = self.path()
                self.expect("punct", ",")
                arg = self.value()
                self.expect("punct", ")")
                return ("func", tok.value.lower(), target, arg)
        path = self.path()
        if path[-1].lower() in ("any", "all") and len(path) > 1 and self.at("punct", "("):
            self.take()
            var = self.expect("name").value
            self.expect("punct", ":")
            inner = self.expr()
            self.expect("punct", ")")
            return ("any" if path[-1].lower() == "any" else "all", path[:-1], var, inner)
        op = self.take()
        if op.kind != "kw" or op.value not in (*_COMPARISONS, "in"):
            raise _syntax(self.text, op.pos)
        if op.value == "in":
            self.expect("punct", "(")
            values = [self.value()]
            while self.at("punct", ","):
                self.take()
                values.append(self.value())
            self.expect("punct", ")")
            return ("in", path, values)
        return ("cmp", op.value, path, self.value())


def parse_filter(text: str) -> Node:
    return _Parser(text).parse()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()  # directory string comparisons ignore case
    return bool(a == b)


@dataclass
class CompiledFilter:
    predicate: Callable[[Any], bool]
    needs_advanced: str | None  # the operator that needs advanced query parameters, if any
    ids: list[str] | None = None  # when the filter is only `id eq`/`id in`: those ids


DIRECTORY_OBJECTS = frozenset({"User", "Group"})


def _object_ids(resource: Resource, path: list[str], values: list[Any], var: str | None) -> None:
    """Directory objects' ids are GUIDs: Graph refuses a filter on `id` with anything else."""
    if resource.name not in DIRECTORY_OBJECTS or var is not None or path != ["id"]:
        return
    for value in values:
        try:
            uuid.UUID(str(value))
        except ValueError:
            raise GraphError(
                400, "Request_BadRequest", f"Invalid object identifier '{value}'."
            ) from None


def compile_filter(text: str, resource: Resource) -> CompiledFilter:
    """Compile `$filter` for `resource`; unsupported clauses raise the errors Graph gives."""
    node = parse_filter(text)
    advanced_op: list[str] = []

    def unsupported(prop: str) -> GraphError:
        return GraphError(
            400,
            "Request_UnsupportedQuery",
            f"Unsupported or invalid query filter clause specified for property '{prop}' of "
            f"resource '{resource.name}'.",
        )

    def resolve(path: list[str], op: str, var: str | None) -> Getter:
        if var is not None and path[0] == var:
            if len(path) == 1:
                return lambda element: element
            key = path[1]
            return lambda element: element.get(key) if isinstance(element, dict) else None
        name = resource.canonical(path[0])
        if name is None or name not in resource.getters:
            raise resource.unknown(path[0])
        allowed = resource.filterable.get(name, frozenset())
        if op not in allowed:
            raise unsupported(name)
        getter = resource.getters[name]
        if len(path) == 1:
            return getter
        if len(path) == 2 and name == "onPremisesExtensionAttributes":
            key = path[1]
            return lambda obj: (getter(obj) or {}).get(key)
        raise unsupported("/".join(path))

    def build(n: Node, var: str | None) -> Callable[[Any], bool]:
        kind = n[0]
        if kind in ("and", "or"):
            left, right = build(n[1], var), build(n[2], var)
            if kind == "and":
                return lambda o: left(o) and right(o)
            return lambda o: left(o) or right(o)
        if kind == "not":
            advanced_op.append("not")
            inner = build(n[1], var)
            return lambda o: not inner(o)
        if kind == "cmp":
            op, path, value = n[1], n[2], n[3]
            if op not in ("eq", "ne"):
                raise unsupported(path[0])
            getter = resolve(path, "eq", var)
            _object_ids(resource, path, [value], var)
            if op == "ne":
                advanced_op.append("ne")
                return lambda o: not _same(getter(o), value)
            return lambda o: _same(getter(o), value)
        if kind == "in":
            getter = resolve(n[1], "eq", var)
            values = n[2]
            _object_ids(resource, n[1], values, var)
            return lambda o: any(_same(getter(o), v) for v in values)
        if kind == "func":
            name, path, arg = n[1], n[2], n[3]
            if name == "contains" or not isinstance(arg, str):
                raise unsupported(path[0])
            getter = resolve(path, name, var)
            if name == "endswith":
                advanced_op.append("endsWith")
                suffix = arg.casefold()
                return lambda o: isinstance(v := getter(o), str) and v.casefold().endswith(suffix)
            prefix = arg.casefold()
            return lambda o: isinstance(v := getter(o), str) and v.casefold().startswith(prefix)
        if kind in ("any", "all"):
            path, lambda_var, inner_node = n[1], n[2], n[3]
            if var is not None:
                raise unsupported("/".join(path))
            getter = resolve(path, "any", None)
            inner = build(inner_node, lambda_var)
            if kind == "all":
                raise unsupported("/".join(path))
            return lambda o: any(inner(e) for e in (getter(o) or ()))
        raise _syntax(text, 0)

    predicate = build(node, None)
    return CompiledFilter(predicate, advanced_op[0] if advanced_op else None, _only_ids(node))


def _only_ids(node: Node) -> list[str] | None:
    """The ids of a filter made only of `id eq '…'` (joined with `or`) or `id in (…)`."""
    if node[0] == "or":
        left, right = _only_ids(node[1]), _only_ids(node[2])
        return None if left is None or right is None else left + right
    if node[0] == "cmp" and node[1] == "eq" and [s.lower() for s in node[2]] == ["id"]:
        return [str(node[3])]
    if node[0] == "in" and [s.lower() for s in node[1]] == ["id"]:
        return [str(v) for v in node[2]]
    return None


# --- $search ---------------------------------------------------------------------------------

_SEARCH_CLAUSE = re.compile(r'\s*"([^"]*)"\s*')
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^\W\d_]+", re.UNICODE)


def _tokens(value: str) -> list[str]:
    # Directory search is tokenized: words split on spaces, symbols and casing changes
    # (https://learn.microsoft.com/en-us/graph/search-query-parameter, "Using $search on
    # directory object collections").
    return [w.casefold() for w in _WORD.findall(value)]


def compile_search(text: str, resource: Resource) -> Callable[[Any], bool]:
    """`$search="displayName:wa" OR "displayName:ad"`: each term matches the start of a word."""
    clauses: list[tuple[str, Callable[[Any], bool]]] = []
    pos = 0
    connector = "and"
    text = text.strip()
    while pos < len(text):
        match = _SEARCH_CLAUSE.match(text, pos)
        if match is None:
            raise GraphError(400, "Request_UnsupportedQuery", f"Invalid $search query: {text}")
        prop, sep, term = match.group(1).partition(":")
        if not sep:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                'Search on directory objects needs a property, e.g. "displayName:term".',
            )
        name = resource.canonical(prop.strip())
        if name is None or name not in resource.searchable:
            raise GraphError(
                400, "Request_UnsupportedQuery", f"Unsupported search property '{prop.strip()}'."
            )
        clauses.append((connector, _term_matcher(resource.getters[name], term.strip())))
        pos = match.end()
        word = re.match(r"(AND|OR)\s+", text[pos:])
        if word:
            connector = word.group(1).lower()
            pos += word.end()
        elif pos < len(text):
            raise GraphError(400, "Request_UnsupportedQuery", f"Invalid $search query: {text}")
    if not clauses:
        raise GraphError(400, "Request_UnsupportedQuery", "Invalid $search query.")

    def predicate(obj: Any) -> bool:
        result = clauses[0][1](obj)
        for connector, matcher in clauses[1:]:
            result = (result and matcher(obj)) if connector == "and" else (result or matcher(obj))
        return result

    return predicate


def _term_matcher(getter: Getter, term: str) -> Callable[[Any], bool]:
    wanted = term.casefold()
    words = _tokens(term)

    def matches(obj: Any) -> bool:
        value = getter(obj)
        if not isinstance(value, str) or not value:
            return False
        if value.casefold().startswith(wanted):
            return True
        tokens = _tokens(value)
        if len(words) <= 1:
            return any(t.startswith(wanted) for t in tokens)
        return all(any(t.startswith(w) for t in tokens) for w in words)

    return matches


def parse_search(request: GraphRequest, resource: Resource) -> Callable[[Any], bool] | None:
    raw = request.query.get("$search")
    if raw is None:
        return None
    if not request.eventual:
        # aad-advanced-queries.md: $search on directory objects without the header.
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special "
            "request header: 'ConsistencyLevel: eventual'",
        )
    return compile_search(raw, resource)


# --- $orderby --------------------------------------------------------------------------------


def parse_orderby(request: GraphRequest, resource: Resource) -> tuple[str, bool] | None:
    raw = request.query.get("$orderby")
    if raw is None or not raw.strip():
        return None
    parts = raw.split()
    name = resource.canonical(parts[0]) if parts else None
    direction = parts[1].lower() if len(parts) > 1 else "asc"
    if (
        name is None
        or name not in resource.sortable
        or len(parts) > 2
        or direction not in ("asc", "desc")
    ):
        raise GraphError(
            400, "Request_UnsupportedQuery", "Sorting not supported for current query."
        )
    return name, direction == "desc"


# --- opaque tokens ---------------------------------------------------------------------------


def _key(state: EmulatorState) -> bytes:
    key = state.extra.get("graph.token_key")
    if key is None:
        key = state.extra.setdefault("graph.token_key", os.urandom(32))
    return key  # type: ignore[no-any-return]


def _mask(key: bytes, mac: bytes, data: bytes) -> bytes:
    stream = hashlib.shake_256(key + mac).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def seal(state: EmulatorState, payload: dict[str, Any]) -> str:
    """An opaque, tamper-evident token: an HMAC of the JSON payload, then the payload masked
    with a key stream, base64url-encoded. Clients can neither read nor alter it."""
    key = _key(state)
    raw = json.dumps(payload, separators=(",", ":")).encode()
    mac = hmac.new(key, raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + _mask(key, mac, raw)).rstrip(b"=").decode()


def unseal(state: EmulatorState, token: str) -> dict[str, Any] | None:
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    key = _key(state)
    mac = blob[:12]
    if len(mac) < 12:
        return None
    raw = _mask(key, mac, blob[12:])
    if not hmac.compare_digest(mac, hmac.new(key, raw, hashlib.sha256).digest()[:12]):
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def expired_page_token() -> GraphError:
    # The directory's answer to a $skiptoken it can't use (expired, altered or from another query).
    return GraphError(
        400,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )


def query_fingerprint(request: GraphRequest, *names: str) -> str:
    """Ties a $skiptoken to the query it pages, so it can't be replayed against another one."""
    material = "\x1f".join(f"{n}={request.query.get(n, '')}" for n in names)
    return hashlib.sha256(material.encode()).hexdigest()[:16]
