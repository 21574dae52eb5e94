from __future__ import annotations

import json
from typing import Any

from litestar.testing import TestClient

from feedserver.schemas import DEFAULT_DIR


def test_served_openapi_equals_exported_file(client: TestClient[Any]) -> None:
    served = client.get("/schema/openapi.json").json()
    exported = json.loads((DEFAULT_DIR / "openapi.json").read_text("utf-8"))
    assert served == exported, "run: python -m feedserver.schemas"
    for path in ("/v1/login", "/v2/snapshots", "/v2/snapshots/{identifier}/download",
                 "/v2/articles/{name}", "/v2/projects"):
        assert path in served["paths"]
