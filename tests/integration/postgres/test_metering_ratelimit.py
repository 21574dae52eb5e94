"""``tests/unit/metering/test_ratelimit.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_ratelimit import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
