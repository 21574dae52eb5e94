"""``tests/unit/metering/test_periods.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_periods import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
