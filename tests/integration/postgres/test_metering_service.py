"""``tests/unit/metering/test_service.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_service import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
