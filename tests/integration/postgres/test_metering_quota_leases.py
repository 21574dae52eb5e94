"""``tests/unit/metering/test_quota_leases.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_quota_leases import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
