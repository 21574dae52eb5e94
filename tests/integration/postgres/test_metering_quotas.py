"""``tests/unit/metering/test_quotas.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_quotas import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
