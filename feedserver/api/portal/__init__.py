"""The web portal: the finance page at ``GET /usage``.

The page is static: HTML, CSS and JavaScript files in ``assets/`` (no CDN, no chart library),
served as they are. The script asks for an API token, fetches ``/v1/usage?month=`` with it
and draws the report; the Content-Security-Policy allows nothing but this origin.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from litestar import Response, Router, get

_ASSETS = files("feedserver.api.portal") / "assets"
PAGE: Final = (_ASSETS / "usage.html").read_bytes()
STYLE: Final = (_ASSETS / "usage.css").read_bytes()
SCRIPT: Final = (_ASSETS / "usage.js").read_bytes()
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'")


@get("/usage", include_in_schema=False)
async def usage_page() -> Response[bytes]:
    return Response(PAGE, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})


@get("/usage/assets/usage.css", include_in_schema=False)
async def usage_style() -> Response[bytes]:
    return Response(STYLE, media_type="text/css; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


@get("/usage/assets/usage.js", include_in_schema=False)
async def usage_script() -> Response[bytes]:
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


def router() -> Router:
    return Router("/", route_handlers=[usage_page, usage_style, usage_script])
