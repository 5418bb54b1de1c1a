"""The interactive API docs, served entirely by the service: Swagger UI at /docs and ReDoc at
/redoc (FastAPI's self-hosting recipe), their JavaScript and CSS from the pinned fastapi-offline
distribution, the OAuth2 redirect page, and pbx-entra's own favicon. A Content-Security-Policy
keeps the browser from loading anything from elsewhere (ReDoc's bundle links a CDN logo)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs-assets"
FAVICON_URL = "/favicon.svg"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

# Same origin only; the pages' own inline start-up script and styles, data: icons, and the
# blob: worker ReDoc's search runs in.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)

# A handset and a node: the PBX linked to the directory.
FAVICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="6" fill="#0b5cad"/>
<path d="M10 7c1 0 2 2.5 2.5 4 .3 1-1.2 2-1.2 2 1 2.5 3.2 4.7 5.7 5.7 0 0 1-1.5 2-1.2 1.5.5 4 1.5
4 2.5s-2 4-4 4C12 24 8 20 8 13c0-2 1-6 2-6z" fill="#fff"/>
<circle cx="23" cy="9" r="3" fill="#7fd1ff"/>
</svg>"""


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = CSP
    return response


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets on an app created with docs_url=redoc_url=None."""
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"the Swagger UI distribution is missing from {ASSETS_DIR}")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    title = app.title

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{title} - Swagger UI",
                oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{FAVICON_URL}",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _page(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{FAVICON_URL}",
                with_google_fonts=False,
            )
        )

    @app.get(FAVICON_URL, include_in_schema=False)
    async def favicon() -> Response:
        return Response(
            FAVICON_SVG,
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )
