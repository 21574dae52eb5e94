"""``tests/unit/metering/test_sealing.py``'s row-for-row check and the refused-then-resealed
batch on PostgreSQL (the property test itself stays on SQLite: hypothesis needs a fresh
database per example)."""

import pytest

from tests.unit.metering.test_sealing import (
    test_a_replayed_response_is_skipped_after_the_optimistic_insert_fails,
    test_one_batch_matches_the_row_model_row_for_row,
)

pytestmark = pytest.mark.integration
__all__ = ["test_a_replayed_response_is_skipped_after_the_optimistic_insert_fails",
           "test_one_batch_matches_the_row_model_row_for_row"]
