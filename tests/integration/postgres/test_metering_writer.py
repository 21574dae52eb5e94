"""``tests/unit/metering/test_writer.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_writer import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
