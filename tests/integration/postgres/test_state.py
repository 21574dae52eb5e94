"""``tests/unit/feeds/events/test_state.py`` on PostgreSQL."""

import pytest

from tests.unit.feeds.events.test_state import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
