"""``tests/unit/metering/test_ledger.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_ledger import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
