"""``tests/unit/metering/test_admission.py`` on PostgreSQL."""

import pytest

from tests.unit.metering.test_admission import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration
