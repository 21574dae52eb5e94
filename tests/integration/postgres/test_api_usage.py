"""``tests/unit/api/test_usage.py`` on PostgreSQL."""

import pytest

from tests.unit.api.test_usage import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
