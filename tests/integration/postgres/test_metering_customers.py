"""``tests/unit/metering/test_customers.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_customers import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
