"""``tests/unit/metering/test_corrections.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_corrections import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
