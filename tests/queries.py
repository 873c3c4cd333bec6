"""Counting database queries across threads (database_sync_to_async runs them off the loop, on
connections that are thread-local): the count is taken at the cursor class, for every thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

from django.db.backends.utils import CursorWrapper


@contextlib.contextmanager
def count_queries() -> Iterator[list[str]]:
    """Every SQL statement any connection in any thread executes while the block runs."""
    queries: list[str] = []
    original = CursorWrapper._execute_with_wrappers

    def counting(self, sql, params, many, executor):
        queries.append(sql)
        return original(self, sql, params, many, executor)

    with mock.patch.object(CursorWrapper, "_execute_with_wrappers", counting):
        yield queries
