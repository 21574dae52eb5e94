"""``tests/unit/metering/test_realtime_billing.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_realtime_billing import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
