"""``tests/unit/metering/test_ledger_process.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_ledger_process import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
