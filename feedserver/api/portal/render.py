"""Templates: litestar's Jinja2 engine over ``templates/``, with the number filters of ``fmt``.

Autoescaping is on and undefined names are errors. Every portal response carries a strict
Content-Security-Policy (no script at all, styles only from ``/usage/static``), ``no-store``
(pages hold private usage and one-time secrets) and no referrer leaves the site.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Response
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from feedserver.api.portal import fmt, urls

HERE = Path(__file__).parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _when(ts: str) -> str:
    """Ledger time text -> ``2026-11-05 12:00 UTC``."""
    return ts[:16].replace("T", " ") + " UTC" if ts else ""


def _unix(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATE_DIR), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update({
        "count": fmt.count, "nbytes": fmt.nbytes, "hours": fmt.hours, "money": fmt.money,
        "short": fmt.short, "when": _when, "unix": _unix, "ext": urls.with_ext,
    })
    env.globals["static_url"] = urls.STATIC
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))


TEMPLATES = template_config()


def page(name: str, *, status: int = 200, **context: Any) -> Template:
    """A portal page; every template gets ``viewer``, ``notice`` and ``error`` (maybe None)."""
    context.setdefault("viewer", None)
    context.setdefault("notice", None)
    context.setdefault("error", None)
    context.setdefault("section", "")
    return Template(template_name=name, context=context, status_code=status,
                    headers=SECURITY_HEADERS)


def add_security_headers(response: Response[Any]) -> Response[Any]:
    """``after_request`` hook of the portal router: redirects and downloads get them too."""
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response
