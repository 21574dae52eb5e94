"""The web portal at ``/usage``: finance (administrators) and customers' self-service.

Server-rendered with litestar's Jinja2 templates (``templates/``) and one stylesheet
(``static/``): no script, no build step. Modules: ``login`` (sign in/out, the entry redirect),
``finance`` (month overview, drill-down customer -> feed -> day, corrections, verification),
``account`` (own usage and quotas, API keys, password), ``downloads`` (CSV/JSON of every table),
``views``/``tables``/``charts``/``fmt`` (pure page content), ``session`` (cookie and CSRF),
``context`` (injected services and the signed-in viewer), ``errors`` (HTML error pages).

Mount with ``ROUTES`` (one router) and the app's ``template_config=TEMPLATES``.
"""

from __future__ import annotations

from litestar import Router
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from feedserver.api.portal import account, downloads, finance, login
from feedserver.api.portal.errors import portal_error
from feedserver.api.portal.render import STATIC_DIR, TEMPLATES, add_security_headers

__all__ = ["ROUTES", "TEMPLATES", "router"]


def router() -> Router:
    handlers: list[ControllerRouterHandler] = [
        *login.ROUTES, *finance.ROUTES, *account.ROUTES, *downloads.ROUTES,
        create_static_files_router(path="/static", directories=[STATIC_DIR],
                                   include_in_schema=False, send_as_attachment=False),
    ]
    return Router("/usage", route_handlers=handlers, include_in_schema=False,
                  exception_handlers={Exception: portal_error}, after_request=add_security_headers)


ROUTES: tuple[ControllerRouterHandler, ...] = (router(),)
