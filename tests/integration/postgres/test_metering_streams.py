"""``tests/unit/metering/test_streams.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_streams import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
