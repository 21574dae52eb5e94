"""``tests/unit/metering/test_reports.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_reports import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
