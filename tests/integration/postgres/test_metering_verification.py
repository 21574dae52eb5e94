"""``tests/unit/metering/test_verification.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_verification import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
