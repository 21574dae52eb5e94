"""``tests/unit/accounts/test_login_throttle.py`` on PostgreSQL."""

import pytest

from tests.unit.accounts.test_login_throttle import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
