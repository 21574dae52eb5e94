"""``tests/unit/metering/test_sealing.py``'s row-for-row check on PostgreSQL (the property test
itself stays on SQLite: hypothesis needs a fresh database per example)."""

import pytest

from tests.unit.metering.test_sealing import test_one_batch_matches_the_row_model_row_for_row

pytestmark = pytest.mark.integration
__all__ = ["test_one_batch_matches_the_row_model_row_for_row"]
