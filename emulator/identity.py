"""The Microsoft identity platform's v2.0 endpoints for every tenant in the state.

- `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/discovery/v2.0/keys`:
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc
- `/{tenant}/oauth2/v2.0/authorize` (HTML sign-in and consent pages, or the automatic mode) and the
  `authorization_code` and `refresh_token` grants of `/{tenant}/oauth2/v2.0/token`:
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
- the `client_credentials` grant:
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
- error codes: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
- consent and admin-restricted permissions:
  https://learn.microsoft.com/en-us/entra/identity-platform/permissions-consent-overview and
  https://learn.microsoft.com/en-us/graph/permissions-reference
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from emulator import tokens
from emulator.errors import aadsts_body, aadsts_error
from emulator.state import App, AuthCode, EmulatorState, RefreshGrant, Tenant, User, utcnow

GRAPH = "https://graph.microsoft.com"
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
SESSION_COOKIE = "ESTSAUTH"
PENDING_TTL = 30 * 60  # seconds a sign-in page stays usable

# Delegated Microsoft Graph permissions: what the consent page says, and whether only an
# administrator may consent (https://learn.microsoft.com/en-us/graph/permissions-reference).
DELEGATED: dict[str, tuple[str, bool]] = {
    "User.Read": ("Sign in and read user profile", False),
    "User.ReadBasic.All": ("Read all users' basic profiles", False),
    "User.Read.All": ("Read all users' full profiles", True),
    "User.ReadWrite.All": ("Read and write all users' full profiles", True),
    "Group.Read.All": ("Read all groups", True),
    "Group.ReadWrite.All": ("Read and write all groups", True),
    "GroupMember.Read.All": ("Read group memberships", True),
    "Directory.Read.All": ("Read directory data", True),
    "Directory.ReadWrite.All": ("Read and write directory data", True),
    "Organization.Read.All": ("Read organization information", True),
    "Contacts.Read": ("Read your contacts", False),
    "Contacts.ReadWrite": ("Have full access to your contacts", False),
    "Contacts.Read.Shared": ("Read user and shared contacts", False),
    "Contacts.ReadWrite.Shared": ("Read and write user and shared contacts", False),
    "MailboxSettings.Read": ("Read user mailbox settings", False),
    "MailboxSettings.ReadWrite": ("Read and write user mailbox settings", False),
    "Presence.Read": ("Read user's presence information", False),
    "Presence.Read.All": ("Read presence information of all users in your organization", False),
    "Presence.ReadWrite": ("Read and write a user's presence information", False),
    "Mail.Read": ("Read user mail", False),
    "People.Read": ("Read users' relevant people lists", False),
}
OIDC_DESCRIPTIONS = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
}
_CANONICAL = {name.lower(): name for name in DELEGATED}


# --- small helpers ----------------------------------------------------------------------------


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def resolve_tenant(state: EmulatorState, key: str) -> Tenant | None:
    """A tenant by id or by its domain name, as the identity platform accepts both."""
    tenant = state.tenant(key)
    if tenant is not None:
        return tenant
    lowered = key.lower()
    return next((t for t in state.tenants.values() if t.domain == lowered), None)


def _tenant_not_found(tenant_key: str) -> str:
    return (
        f"Tenant '{tenant_key}' not found. Check to make sure you have the correct tenant ID and "
        "are signing into the correct cloud. Check with your subscription administrator, this "
        "may happen if there are no active subscriptions for the tenant."
    )


def _random_token(prefix: str, size: int) -> str:
    return prefix + secrets.token_urlsafe(size)


@dataclass
class Scopes:
    """A parsed `scope` parameter."""

    graph: list[str] = field(default_factory=list)  # canonical short names, e.g. User.Read.All
    oidc: set[str] = field(default_factory=set)
    default: bool = False  # https://graph.microsoft.com/.default
    uri_form: bool = False  # Graph scopes were given with the resource prefix
    invalid: list[str] = field(default_factory=list)
    other_resources: list[str] = field(default_factory=list)


def parse_scopes(raw: str | None) -> Scopes:
    result = Scopes()
    for item in (raw or "").split():
        lowered = item.lower()
        if lowered in OIDC_SCOPES:
            result.oidc.add(lowered)
            continue
        name = item
        if lowered.startswith(GRAPH.lower() + "/"):
            name = item[len(GRAPH) + 1 :]
            result.uri_form = True
        elif "://" in item or lowered.startswith("api:"):
            result.other_resources.append(item)
            continue
        if name == ".default":
            result.default = True
        elif name.lower() in _CANONICAL:
            canonical = _CANONICAL[name.lower()]
            if canonical not in result.graph:
                result.graph.append(canonical)
        else:
            result.invalid.append(item)
    return result


def _granted(app: App, user: User) -> set[str]:
    return app.consented_scopes | app.user_consents.get(user.id, set())


def _effective_graph_scopes(scopes: Scopes, app: App, user: User) -> list[str]:
    """The Graph scopes a token carries: the requested ones, or with `.default` all granted."""
    if scopes.default:
        granted = _granted(app, user)
        return sorted(s for s in granted if s in DELEGATED) + [
            s for s in scopes.graph if s not in granted
        ]
    return list(scopes.graph)


def _scope_string(graph_scopes: list[str], oidc: set[str], uri_form: bool) -> str:
    names = [f"{GRAPH}/{s}" if uri_form else s for s in graph_scopes]
    names += [s for s in OIDC_SCOPES if s in oidc and s != "offline_access"]
    return " ".join(names)


# --- HTML pages -------------------------------------------------------------------------------

_STYLE = """
body{font-family:"Segoe UI",Arial,sans-serif;background:#f2f2f2;margin:0}
.box{background:#fff;width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600;margin:0 0 16px}
input[type=text],input[type=email],input[type=password]{width:100%;padding:6px 0;font-size:15px;
border:0;border-bottom:1px solid #666;margin:8px 0 16px;outline:none}
.buttons{text-align:right;margin-top:24px}
button{min-width:108px;padding:6px 12px;font-size:15px;margin-left:8px;cursor:pointer;border:0}
.primary{background:#0067b8;color:#fff}.secondary{background:#ccc}
.error{color:#e81123;margin:8px 0}ul{padding-left:20px}.small{font-size:13px;color:#666}
.app{font-weight:600}.meta{font-size:12px;color:#666;margin-top:24px;word-break:break-all}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><div class='box'>{body}</div></body></html>"
    )
    return HTMLResponse(
        document,
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def error_page(code: int, message: str, status: int = 400) -> HTMLResponse:
    """The page shown when the request can't be sent back to the app (unknown app, bad
    redirect_uri, disabled account...)."""
    body = aadsts_body("invalid_request", code, message)
    return _page(
        "Sign in to your account",
        "<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
        f"<p class='error' id='error-code'>AADSTS{code}: {html.escape(message)}</p>"
        f"<div class='meta'>Request Id: {body['trace_id']}<br>"
        f"Correlation Id: {body['correlation_id']}<br>Timestamp: {body['timestamp']}</div>",
        status,
    )


def _hidden(name: str, value: str) -> str:
    return f"<input type='hidden' name='{name}' value='{html.escape(value, quote=True)}'>"


def _sign_in_page(tenant: Tenant, ctx: str, login_hint: str, error: str | None) -> HTMLResponse:
    error_html = f"<p class='error' id='usernameError'>{html.escape(error)}</p>" if error else ""
    return _page(
        "Sign in to your account",
        f"<h1>Sign in</h1><p class='small'>{html.escape(tenant.display_name)}</p>{error_html}"
        f"<form method='post' action='/{tenant.id}/login' id='credentials'>"
        f"{_hidden('ctx', ctx)}"
        "<label for='i0116'>Email, phone, or Skype</label>"
        f"<input type='email' name='loginfmt' id='i0116' autocomplete='username' required "
        f"value='{html.escape(login_hint, quote=True)}'>"
        "<label for='i0118'>Password</label>"
        "<input type='password' name='passwd' id='i0118' autocomplete='current-password'>"
        "<div class='buttons'><button type='submit' class='primary' id='idSIButton9'>"
        "Sign in</button></div></form>",
    )


def _consent_page(
    tenant: Tenant, app: App, user: User, ctx: str, requested: list[tuple[str, str]]
) -> HTMLResponse:
    items = "".join(
        f"<li data-scope='{html.escape(scope, quote=True)}'>{html.escape(text)}</li>"
        for scope, text in requested
    )
    checkbox = (
        "<p><label><input type='checkbox' name='consent_on_behalf' value='true' "
        "id='consent_on_behalf'> Consent on behalf of your organization</label></p>"
        if user.is_admin
        else ""
    )
    return _page(
        "Permissions requested",
        f"<p class='small'>{html.escape(user.user_principal_name)}</p>"
        "<h1>Permissions requested</h1>"
        f"<p><span class='app'>{html.escape(app.display_name)}</span><br>"
        "<span class='small'>unverified</span></p>"
        f"<p>This app would like to:</p><ul id='permissions'>{items}</ul>"
        f"<form method='post' action='/{tenant.id}/Consent/Set' id='consent'>"
        f"{_hidden('ctx', ctx)}{checkbox}"
        "<p class='small'>Accepting these permissions means that you allow this app to use your "
        "data as specified in their terms of service and privacy statement.</p>"
        "<div class='buttons'>"
        "<button type='submit' name='action' value='cancel' class='secondary' id='idBtn_Back'>"
        "Cancel</button>"
        "<button type='submit' name='action' value='accept' class='primary' id='idBtn_Accept'>"
        "Accept</button></div></form>",
    )


def _admin_approval_page(tenant: Tenant, app: App, ctx: str) -> HTMLResponse:
    return _page(
        "Need admin approval",
        "<h1>Need admin approval</h1>"
        f"<p><span class='app'>{html.escape(app.display_name)}</span> needs permission to access "
        "resources in your organization that only an admin can grant. Please ask an admin to "
        "grant permission to this app before you can use it.</p>"
        f"<form method='post' action='/{tenant.id}/Consent/Set'>{_hidden('ctx', ctx)}"
        "<div class='buttons'><button type='submit' name='action' value='return' "
        "class='secondary' id='idBtn_Back'>Return to the application without granting consent"
        "</button></div></form>",
    )


# --- the authorization request ----------------------------------------------------------------


@dataclass
class AuthRequest:
    tenant_id: str
    client_id: str
    redirect_uri: str
    scopes: Scopes
    raw_scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    response_mode: str
    prompt: str | None
    login_hint: str
    user_id: str | None = None
    created: float = field(default_factory=time.monotonic)


def _pending(state: EmulatorState) -> dict[str, AuthRequest]:
    pending: dict[str, AuthRequest] = state.extra.setdefault("authorize_requests", {})
    now = time.monotonic()
    for ctx in [c for c, r in pending.items() if now - r.created > PENDING_TTL]:
        del pending[ctx]
    return pending


def _sessions(state: EmulatorState) -> dict[str, tuple[str, str]]:
    sessions: dict[str, tuple[str, str]] = state.extra.setdefault("sessions", {})
    return sessions


def _respond(auth: AuthRequest, params: dict[str, str | None]) -> Response:
    """Send the result to the app's redirect URI in the requested response mode."""
    values = {k: v for k, v in params.items() if v is not None}
    if auth.state is not None:
        values["state"] = auth.state
    if auth.response_mode == "form_post":
        fields = "".join(_hidden(k, v) for k, v in values.items())
        return HTMLResponse(
            "<!DOCTYPE html><html><head><title>Working...</title></head>"
            "<body onload='document.forms[0].submit()'>"
            f"<form method='POST' action='{html.escape(auth.redirect_uri, quote=True)}'>"
            f"{fields}<noscript><button type='submit'>Continue</button></noscript>"
            "</form></body></html>",
            headers={"Cache-Control": "no-store"},
        )
    separator = (
        "#" if auth.response_mode == "fragment" else ("&" if "?" in auth.redirect_uri else "?")
    )
    return RedirectResponse(auth.redirect_uri + separator + urlencode(values), status_code=302)


def _redirect_error(
    auth: AuthRequest, error: str, code: int, message: str, subcode: str | None = None
) -> Response:
    body = aadsts_body(error, code, message)
    return _respond(
        auth,
        {
            "error": error,
            "error_subcode": subcode,
            "error_description": str(body["error_description"]),
            "error_uri": str(body["error_uri"]),
        },
    )


def _check_authorize(tenant: Tenant, params: dict[str, str]) -> AuthRequest | Response:
    """Validate an authorization request. Errors about the app or its redirect URI are shown
    on a page (the redirect URI can't be trusted); the others go back to the app."""
    client_id = params.get("client_id", "")
    if not client_id:
        return error_page(
            900144, "The request body must contain the following parameter: 'client_id'."
        )
    app = tenant.apps.get(client_id)
    if app is None:
        return error_page(
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.display_name}'. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. You may "
            "have sent your authentication request to the wrong tenant.",
        )
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        return error_page(900971, "No reply address provided.")
    # `redirect_uri` "must exactly match one of the redirect URIs you registered"
    # (v2-oauth2-auth-code-flow); otherwise AADSTS50011, shown to the user, not redirected.
    if redirect_uri not in app.redirect_uris:
        return error_page(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{app.app_id}'. Make sure the redirect "
            "URI sent in the request matches one added to your application in the Azure portal. "
            "Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix "
            "this.",
        )
    response_mode = params.get("response_mode") or "query"
    scopes = parse_scopes(params.get("scope"))
    auth = AuthRequest(
        tenant_id=tenant.id,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        raw_scope=params.get("scope", ""),
        state=params.get("state"),
        nonce=params.get("nonce"),
        code_challenge=params.get("code_challenge"),
        code_challenge_method=params.get("code_challenge_method"),
        response_mode=response_mode
        if response_mode in ("query", "fragment", "form_post")
        else "query",
        prompt=params.get("prompt"),
        login_hint=params.get("login_hint", ""),
    )
    if response_mode not in ("query", "fragment", "form_post"):
        return _redirect_error(
            auth, "invalid_request", 70007, f"The response_mode '{response_mode}' is not supported."
        )
    if params.get("response_type") != "code":
        return _redirect_error(
            auth,
            "unsupported_response_type",
            70005,
            "The provided value for the input parameter 'response_type' is not allowed for this "
            "request. Expected value is 'code'.",
        )
    if not params.get("scope"):
        return _redirect_error(
            auth,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    if scopes.invalid or scopes.other_resources:
        bad = (scopes.invalid or scopes.other_resources)[0]
        return _redirect_error(
            auth,
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' is not valid. The scope {bad} "
            "is not valid.",
        )
    if auth.code_challenge_method is not None and not auth.code_challenge:
        return _redirect_error(
            auth, "invalid_request", 50147, "The size of the code challenge parameter is not valid."
        )
    if auth.code_challenge:
        # v2-oauth2-auth-code-flow, `code_challenge_method`: "If excluded, code_challenge is
        # assumed to be plaintext ... The Microsoft identity platform supports both plain and
        # S256."
        method = auth.code_challenge_method or "plain"
        if method not in ("S256", "plain"):
            return _redirect_error(
                auth,
                "invalid_request",
                501491,
                "Invalid code_challenge_method: only S256 and plain are supported.",
            )
        if not 43 <= len(auth.code_challenge) <= 128:
            return _redirect_error(
                auth, "invalid_request", 501491, "Invalid size of Code_Challenge parameter."
            )
        auth.code_challenge_method = method
    if auth.prompt not in (None, "", "login", "none", "consent", "select_account"):
        return _redirect_error(
            auth, "invalid_request", 90023, f"Invalid value for prompt: '{auth.prompt}'."
        )
    return auth


def _user_problem(tenant: Tenant, user: User | None, name: str) -> tuple[int, str] | None:
    if user is None or user.deleted_at is not None:
        return (
            50034,
            f"The user account {name} does not exist in the {tenant.id} directory. To sign into "
            "this application, the account must be added to the directory.",
        )
    if not user.account_enabled:
        return 50057, "The user account is disabled."
    return None


def _needed_consent(auth: AuthRequest, app: App, user: User) -> list[str]:
    requested = [*_effective_graph_scopes(auth.scopes, app, user), *sorted(auth.scopes.oidc)]
    granted = _granted(app, user)
    return [s for s in requested if s not in granted]


def _after_sign_in(
    request: Request, tenant: Tenant, app: App, user: User, auth: AuthRequest, ctx: str
) -> Response:
    """The user is known: show consent if needed, else send the code back."""
    needed = _needed_consent(auth, app, user)
    if not needed and auth.prompt != "consent":
        return _issue_code(tenant, auth, user)
    if any(DELEGATED.get(s, ("", False))[1] for s in needed) and not user.is_admin:
        auth.user_id = user.id
        _pending(_state(request))[ctx] = auth
        return _admin_approval_page(tenant, app, ctx)
    auth.user_id = user.id
    _pending(_state(request))[ctx] = auth
    listed = [*_effective_graph_scopes(auth.scopes, app, user), *sorted(auth.scopes.oidc)]
    texts = [
        (s, DELEGATED[s][0] if s in DELEGATED else OIDC_DESCRIPTIONS.get(s, s)) for s in listed
    ]
    return _consent_page(tenant, app, user, ctx, texts)


def _issue_code(tenant: Tenant, auth: AuthRequest, user: User) -> Response:
    now = utcnow()
    for code in [c for c, v in tenant.auth_codes.items() if v.expires_at < now]:
        del tenant.auth_codes[code]
    code = _random_token("1.AXoA", 96)
    # v2-oauth2-auth-code-flow, successful response: "Authorization codes are short lived.
    # Typically, they expire after about 10 minutes." (TenantSettings.code_lifetime).
    tenant.auth_codes[code] = AuthCode(
        code=code,
        client_id=auth.client_id,
        redirect_uri=auth.redirect_uri,
        user_id=user.id,
        scopes=auth.raw_scope.split(),
        nonce=auth.nonce,
        code_challenge=auth.code_challenge,
        code_challenge_method=auth.code_challenge_method,
        expires_at=now + timedelta(seconds=tenant.settings.code_lifetime),
    )
    return _respond(auth, {"code": code, "session_state": _session_state(user.id)})


def _session_state(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:36]


def _grant_consent(app: App, user: User, scopes: list[str], tenant_wide: bool) -> None:
    if tenant_wide:
        app.consented_scopes.update(scopes)
    else:
        app.user_consents.setdefault(user.id, set()).update(scopes)


def _set_session(response: Response, state: EmulatorState, tenant: Tenant, user: User) -> None:
    token = secrets.token_urlsafe(32)
    _sessions(state)[token] = (tenant.id, user.id)
    response.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True, samesite="lax")


def _session_user(request: Request, tenant: Tenant) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    session = _sessions(_state(request)).get(token)
    if session is None or session[0] != tenant.id:
        return None
    user = tenant.users.get(session[1])
    if user is None or user.deleted_at is not None or not user.account_enabled:
        return None
    return user


async def authorize(request: Request) -> Response:
    state = _state(request)
    tenant_key = request.path_params["tenant"]
    tenant = resolve_tenant(state, tenant_key)
    if tenant is None:
        return error_page(90002, _tenant_not_found(tenant_key))
    if request.method == "POST":
        params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    else:
        params = dict(request.query_params)
    checked = _check_authorize(tenant, params)
    if isinstance(checked, Response):
        return checked
    auth = checked
    app = tenant.apps[auth.client_id]
    ctx = secrets.token_urlsafe(24)

    if tenant.settings.auto_consent_user:
        # Headless mode: this user signs in and accepts at once (as an admin, for the whole
        # organization), so tests get a code without a browser.
        upn = tenant.settings.auto_consent_user
        user = tenant.find_user(upn)
        problem = _user_problem(tenant, user, upn)
        if problem is not None or user is None:
            return error_page(*problem) if problem else error_page(50034, upn)
        needed = _needed_consent(auth, app, user)
        if any(DELEGATED.get(s, ("", False))[1] for s in needed) and not user.is_admin:
            return _redirect_error(
                auth, "access_denied", 90094, "The grant requires admin permission."
            )
        _grant_consent(app, user, needed, tenant_wide=user.is_admin)
        return _issue_code(tenant, auth, user)

    user = None if auth.prompt in ("login", "select_account") else _session_user(request, tenant)
    # v2-oauth2-auth-code-flow, `prompt`: none "ensures that the user isn't presented with any
    # interactive prompt"; login forces credentials; consent forces the consent dialog.
    if auth.prompt == "none":
        if user is None:
            return _redirect_error(
                auth,
                "login_required",
                50058,
                "A silent sign-in request was sent but no user is signed in.",
            )
        if _needed_consent(auth, app, user):
            return _redirect_error(
                auth,
                "consent_required",
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{app.app_id}' named '{app.display_name}'. Send an interactive authorization "
                "request for this user and resource.",
            )
        return _issue_code(tenant, auth, user)
    if user is not None:
        return _after_sign_in(request, tenant, app, user, auth, ctx)
    _pending(state)[ctx] = auth
    return _sign_in_page(tenant, ctx, auth.login_hint, None)


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


async def login(request: Request) -> Response:
    """The sign-in form's POST: check the credentials, then consent or redirect."""
    state = _state(request)
    tenant = resolve_tenant(state, request.path_params["tenant"])
    if tenant is None:
        return error_page(90002, _tenant_not_found(request.path_params["tenant"]))
    form = await _form(request)
    ctx = form.get("ctx", "")
    auth = _pending(state).get(ctx)
    if auth is None or auth.tenant_id != tenant.id:
        return error_page(
            50089, "Flow token expired - authentication failed. Please sign in again."
        )
    app = tenant.apps.get(auth.client_id)
    if app is None:
        return error_page(700016, f"Application with identifier '{auth.client_id}' was not found.")
    username = form.get("loginfmt", "").strip()
    user = tenant.find_user(username) if username else None
    if user is None or user.deleted_at is not None:
        return _sign_in_page(
            tenant,
            ctx,
            username,
            "This username may be incorrect. Make sure you typed it correctly. Otherwise, "
            "contact your admin.",
        )
    if not hmac.compare_digest(form.get("passwd", "").encode(), user.password.encode()):
        return _sign_in_page(
            tenant,
            ctx,
            username,
            "Your account or password is incorrect. If you don't remember your password, reset "
            "it now.",
        )
    if not user.account_enabled:
        return error_page(50057, "The user account is disabled.")
    del _pending(state)[ctx]
    response = _after_sign_in(request, tenant, app, user, auth, secrets.token_urlsafe(24))
    _set_session(response, state, tenant, user)
    return response


async def consent(request: Request) -> Response:
    """The consent page's POST: Accept grants the permissions, Cancel returns access_denied."""
    state = _state(request)
    tenant = resolve_tenant(state, request.path_params["tenant"])
    if tenant is None:
        return error_page(90002, _tenant_not_found(request.path_params["tenant"]))
    form = await _form(request)
    auth = _pending(state).pop(form.get("ctx", ""), None)
    if auth is None or auth.tenant_id != tenant.id or auth.user_id is None:
        return error_page(
            50089, "Flow token expired - authentication failed. Please sign in again."
        )
    app = tenant.apps.get(auth.client_id)
    user = tenant.users.get(auth.user_id)
    if app is None or user is None:
        return error_page(50089, "Flow token expired - authentication failed.")
    action = form.get("action")
    if action == "return":
        return _redirect_error(
            auth, "access_denied", 90094, "The grant requires admin permission.", "cancel"
        )
    if action != "accept":
        return _redirect_error(
            auth,
            "access_denied",
            65004,
            "User declined to consent to access the app.",
            "cancel",
        )
    # Only an administrator sees "Consent on behalf of your organization"; it grants the
    # permissions for every user (application-consent-experience, permissions-consent-overview).
    tenant_wide = user.is_admin and form.get("consent_on_behalf") == "true"
    requested = [*_effective_graph_scopes(auth.scopes, app, user), *sorted(auth.scopes.oidc)]
    if any(DELEGATED.get(s, ("", False))[1] for s in requested) and not user.is_admin:
        granted = _granted(app, user)
        if any(DELEGATED.get(s, ("", False))[1] and s not in granted for s in requested):
            return _redirect_error(
                auth, "access_denied", 90094, "The grant requires admin permission."
            )
    _grant_consent(app, user, requested, tenant_wide)
    return _issue_code(tenant, auth, user)


async def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        _sessions(_state(request)).pop(token, None)
    target = request.query_params.get("post_logout_redirect_uri")
    response: Response = (
        RedirectResponse(target, status_code=302)
        if target
        else _page("Sign out", "<h1>You signed out of your account</h1>")
    )
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- discovery --------------------------------------------------------------------------------


async def openid_configuration(request: Request) -> Response:
    state = _state(request)
    tenant_key = request.path_params["tenant"]
    tenant = resolve_tenant(state, tenant_key)
    if tenant is None:
        return aadsts_error(400, "invalid_tenant", 90002, _tenant_not_found(tenant_key))
    base = f"{state.base_url}/{tenant.id}"
    return JSONResponse(
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": tokens.id_token_issuer(state, tenant),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    )


async def keys(request: Request) -> Response:
    state = _state(request)
    tenant_key = request.path_params["tenant"]
    tenant = resolve_tenant(state, tenant_key)
    if tenant is None:
        return aadsts_error(400, "invalid_tenant", 90002, _tenant_not_found(tenant_key))
    return JSONResponse(tokens.jwks(state, tenant))


# --- the token endpoint -----------------------------------------------------------------------


class TokenError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def _missing(name: str) -> TokenError:
    return TokenError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def _client_credentials_from(request: Request, form: dict[str, str]) -> tuple[str, str | None]:
    """client_secret_post, or client_secret_basic (RFC 6749 section 2.3.1)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            raise TokenError(
                401, "invalid_client", 9002313, "Invalid request. Request is malformed or invalid."
            ) from None
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret")


def _authenticate_client(tenant: Tenant, client_id: str, secret: str | None) -> App:
    if not client_id:
        raise _missing("client_id")
    app = tenant.apps.get(client_id)
    if app is None:
        raise TokenError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.display_name}'. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. You may "
            "have sent your authentication request to the wrong tenant.",
        )
    if not secret:
        raise TokenError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    matching = [s for s in app.secrets if hmac.compare_digest(s.value.encode(), secret.encode())]
    if not matching:
        raise TokenError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            "client secret value, not the client secret ID, for a secret added to app "
            f"'{app.app_id}'.",
        )
    now = utcnow()
    if all(s.end_date_time <= now for s in matching):
        raise TokenError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app.app_id}' are expired. Visit the Azure "
            "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
            "using certificate credentials for added security: https://aka.ms/certCreds.",
        )
    return app


def _token_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _client_credentials(
    state: EmulatorState, tenant: Tenant, app: App, form: dict[str, str]
) -> Response:
    # v2-oauth2-client-creds-grant-flow: the scope "should be the resource identifier
    # (application ID URI) of the resource you want, affixed with the .default suffix"; the
    # token carries the application permissions granted to the app (`roles`).
    raw = form.get("scope")
    if not raw:
        raise _missing("scope")
    items = raw.split()
    for item in items:
        if not item.endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {item} is not valid. Client credential flows must "
                "have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
    resources = {item[: -len("/.default")].rstrip("/") for item in items}
    if len(resources) > 1:
        raise TokenError(
            400,
            "invalid_scope",
            700022,
            "The provided value for the input parameter scope is not valid because it contains "
            "more than one resource.",
        )
    resource = resources.pop()
    if resource.lower() not in (GRAPH.lower(), tokens.GRAPH_APP_ID):
        raise TokenError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named "
            f"{tenant.display_name}. This can happen if the application has not been installed by "
            "the administrator of the tenant or consented to by any user in the tenant. You might "
            "have sent your authentication request to the wrong tenant.",
        )
    lifetime = tenant.settings.access_token_lifetime
    token = tokens.issue_access_token(state, tenant, app, None, set(), set(app.app_roles))
    return _token_response(
        {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
    )


def _check_verifier(code: AuthCode, verifier: str | None) -> None:
    """RFC 7636 section 4.6; a mismatch is AADSTS501481 (reference-error-codes)."""
    if not code.code_challenge:
        return
    mismatch = TokenError(
        400,
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request.",
    )
    if not verifier or not re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier):
        raise mismatch
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        expected = verifier
    if not hmac.compare_digest(expected.encode(), code.code_challenge.encode()):
        raise mismatch


def _consent_missing(app: App) -> TokenError:
    return TokenError(
        400,
        "invalid_grant",
        65001,
        f"The user or administrator has not consented to use the application with ID "
        f"'{app.app_id}' named '{app.display_name}'. Send an interactive authorization request "
        "for this user and resource.",
    )


def _user_for_grant(tenant: Tenant, user_id: str) -> User:
    user = tenant.users.get(user_id)
    problem = _user_problem(tenant, user, user_id)
    if problem is not None or user is None:
        code, message = problem or (50034, user_id)
        raise TokenError(400, "invalid_grant", code, message)
    return user


def _delegated_tokens(
    state: EmulatorState,
    tenant: Tenant,
    app: App,
    user: User,
    scopes: Scopes,
    nonce: str | None,
    form: dict[str, str],
) -> Response:
    """Access token (scp), and the refresh token and ID token when offline_access and openid
    were granted."""
    granted = _granted(app, user)
    graph_scopes = _effective_graph_scopes(scopes, app, user)
    if any(s not in granted for s in graph_scopes):
        raise _consent_missing(app)
    scp = set(graph_scopes) | {s for s in scopes.oidc if s != "offline_access"}
    lifetime = tenant.settings.access_token_lifetime
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": _scope_string(graph_scopes, scopes.oidc, scopes.uri_form),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": tokens.issue_access_token(state, tenant, app, user, scp, set()),
    }
    # v2-oauth2-auth-code-flow, successful response: `refresh_token` "Only provided if
    # offline_access scope was requested", `id_token` "Only provided if openid scope was
    # requested".
    if "offline_access" in scopes.oidc:
        now = utcnow()
        refresh = _random_token("1.AXoA", 160)
        stored = [f"{GRAPH}/{s}" if scopes.uri_form else s for s in graph_scopes]
        tenant.refresh_tokens[refresh] = RefreshGrant(
            token=refresh,
            client_id=app.app_id,
            user_id=user.id,
            scopes=[*stored, *sorted(scopes.oidc)],
            issued_at=now,
            expires_at=now + timedelta(seconds=tenant.settings.refresh_token_lifetime),
        )
        body["refresh_token"] = refresh
    if "openid" in scopes.oidc:
        body["id_token"] = tokens.issue_id_token(state, tenant, app, user, nonce, scopes.oidc)
    if form.get("client_info") == "1":
        body["client_info"] = tokens.client_info(tenant, user)
    return _token_response(body)


def _authorization_code(
    state: EmulatorState, tenant: Tenant, app: App, form: dict[str, str]
) -> Response:
    code_value = form.get("code")
    if not code_value:
        raise _missing("code")
    redirect_uri = form.get("redirect_uri")
    if not redirect_uri:
        raise _missing("redirect_uri")
    code = tenant.auth_codes.get(code_value)
    if code is None:
        raise TokenError(
            400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
        )
    if code.redeemed:  # reference-error-codes: AADSTS54005
        raise TokenError(
            400,
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code "
            "or use an existing refresh token.",
        )
    if code.expires_at <= utcnow():
        raise TokenError(
            400,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. "
            "Send a new interactive authorization request for this user and resource.",
        )
    if code.client_id != app.app_id:
        raise TokenError(
            400,
            "invalid_grant",
            70000,
            "The provided value for the 'code' parameter is not valid. The code was issued to "
            "another client.",
        )
    if redirect_uri != code.redirect_uri:
        raise TokenError(
            400,
            "invalid_grant",
            500112,
            f"The reply address '{redirect_uri}' does not match the reply address "
            f"'{code.redirect_uri}' provided when requesting Authorization code.",
        )
    _check_verifier(code, form.get("code_verifier"))
    code.redeemed = True
    user = _user_for_grant(tenant, code.user_id)
    scopes = parse_scopes(" ".join(code.scopes))
    if form.get("scope"):
        # A Microsoft extension: the scope at redemption names the resource; the permissions
        # are those consented for the code (plus any other already granted).
        asked = parse_scopes(form["scope"])
        for name in asked.graph:
            if name not in scopes.graph:
                scopes.graph.append(name)
        scopes.uri_form = scopes.uri_form or asked.uri_form
    return _delegated_tokens(state, tenant, app, user, scopes, code.nonce, form)


def _refresh_token(
    state: EmulatorState, tenant: Tenant, app: App, form: dict[str, str]
) -> Response:
    value = form.get("refresh_token")
    if not value:
        raise _missing("refresh_token")
    grant = tenant.refresh_tokens.get(value)
    if grant is None:
        raise TokenError(
            400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
        )
    if grant.client_id != app.app_id:
        raise TokenError(
            400,
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed: the refresh token was issued to another "
            "client.",
        )
    user = tenant.users.get(grant.user_id)
    valid_after = user.sessions_valid_after if user else None
    if grant.revoked or (valid_after is not None and grant.issued_at < valid_after):
        raise TokenError(
            400,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is "
            "needed. The user might have changed or reset their password. The grant was issued "
            f"on '{grant.issued_at.isoformat()}' and the TokensValidFrom date (before which "
            "tokens are not valid) for this user is "
            f"'{(valid_after or grant.issued_at).isoformat()}'.",
        )
    if grant.expires_at <= utcnow():
        inactive = tenant.settings.refresh_token_lifetime // 86400
        raise TokenError(
            400,
            "invalid_grant",
            700082,
            f"The refresh token has expired due to inactivity. The token was issued on "
            f"{grant.issued_at.isoformat()} and was inactive for {inactive}.00:00:00.",
        )
    user = _user_for_grant(tenant, grant.user_id)
    original = parse_scopes(" ".join(grant.scopes))
    scopes = parse_scopes(form.get("scope")) if form.get("scope") else original
    if not scopes.graph and not scopes.default:
        scopes.graph = list(original.graph)
        scopes.uri_form = original.uri_form
    # Refresh tokens are valid for every permission already consented, and "Refresh tokens
    # aren't revoked when used to acquire new access tokens" (v2-oauth2-auth-code-flow,
    # "Refresh the access token"): a new one is issued each time, the old one keeps working.
    scopes.oidc |= original.oidc & {"offline_access", "openid", "profile", "email"}
    grant.used = True
    return _delegated_tokens(state, tenant, app, user, scopes, None, form)


async def token(request: Request) -> Response:
    state = _state(request)
    tenant_key = request.path_params["tenant"]
    correlation_id = request.headers.get("client-request-id")
    tenant = resolve_tenant(state, tenant_key)
    if tenant is None:
        return aadsts_error(
            400, "invalid_request", 90002, _tenant_not_found(tenant_key), correlation_id
        )
    form = await _form(request)
    try:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing("grant_type")
        client_id, secret = _client_credentials_from(request, form)
        if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        app = _authenticate_client(tenant, client_id, secret)
        if grant_type == "client_credentials":
            return _client_credentials(state, tenant, app, form)
        if grant_type == "authorization_code":
            return _authorization_code(state, tenant, app, form)
        return _refresh_token(state, tenant, app, form)
    except TokenError as exc:
        return aadsts_error(exc.status, exc.error, exc.code, exc.description, correlation_id)


async def token_get(request: Request) -> Response:
    return aadsts_error(
        400,
        "invalid_request",
        900561,
        "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
    )


def identity_routes() -> list[Route]:
    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", keys),
        Route("/{tenant}/discovery/keys", keys),
        Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", token_get, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/logout", logout, methods=["GET", "POST"]),
        Route("/{tenant}/login", login, methods=["POST"]),
        Route("/{tenant}/Consent/Set", consent, methods=["POST"]),
    ]
