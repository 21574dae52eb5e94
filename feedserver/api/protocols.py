"""The seams between handlers and components: the protocols the HTTP layer calls, and
``Injected``, how a handler names a component it is handed.

Lowest module of ``api/``: route modules, the portal and ``services`` (which builds the
``Services`` these are filled from) all import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Protocol, TypeAlias, TypeVar

from litestar.di import Dependency
from litestar.params import SkipValidationMarker

from feedserver.accounts.models import Principal, TokenPair
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.store import Resolved
from feedserver.models import Article

T = TypeVar("T")

# A handler parameter filled by the dependency of the same name (``build_app`` provides one
# per component). Not validated per request: the providers are typed (mypy checks them), and
# an isinstance check of a protocol costs tens of microseconds on every request.
Injected: TypeAlias = Annotated[T, Dependency(kind="named"), SkipValidationMarker()]


class Accounts(Protocol):
    """Who is calling (``feedserver.accounts.service.Accounts`` fits). Every method is
    synchronous and does blocking I/O: handlers call it in a worker thread."""

    def login(self, username: str, password: str, *, client: str | None = None) -> TokenPair:
        """Tokens for a right password; ``client`` is the caller's address (throttling).
        Raises ``Unauthorized`` (wrong password), ``Forbidden`` (disabled), ``RateLimited``
        (throttled)."""

    def refresh(self, username: str, refresh_token: str) -> TokenPair:
        """Raises ``Unauthorized``, ``Forbidden``, ``RateLimited`` (refresh limit)."""

    def revoke(self, refresh_token: str) -> None:
        """Raises ``Unauthorized`` (unknown token)."""

    def cached_principal(self, kind: Literal["bearer", "api_key"], secret: str
                         ) -> Principal | None:
        """Without I/O (called on the event loop): the principal when memory alone decides,
        else None (then ``authenticate_*`` in a worker thread). Raises ``Unauthorized``."""

    def authenticate_bearer(self, token: str) -> Principal:
        """An access token or an API key. Raises ``Unauthorized``, ``Forbidden``."""

    def authenticate_api_key(self, key: str) -> Principal:
        """Raises ``Unauthorized``, ``Forbidden``."""


class Snapshots(Protocol):
    """Published snapshots (``feeds.snapshots.store.SnapshotStore`` fits); synchronous."""

    def identifiers(self) -> list[str]: ...
    def versions(self, identifier: str) -> list[int]: ...
    def manifest(self, identifier: str, version: int | None = None) -> Manifest: ...
    def resolve(self, identifier: str, version: int | None = None) -> Resolved: ...
    def hinted(self, identifier: str) -> Manifest | None: ...

    def resolved(self, identifier: str, version: int | None = None) -> Resolved | None:
        """Without reading a blob (called on the event loop): ``resolve``'s answer when
        memory and one ``stat`` decide, else None (then ``resolve`` in a worker thread)."""


class ArticleState(Protocol):
    """The latest revision of every page (``feeds.events.state.StateStore`` fits).
    ``local_reads``: its reads never wait on a writer or the network (SQLite), so a handler
    may call them on the event loop rather than pay a worker-thread hop."""

    @property
    def local_reads(self) -> bool: ...

    def find_by_name(self, name: str, projects: Sequence[str] | None = None, *,
                     limit: int = 100) -> list[Article]: ...
