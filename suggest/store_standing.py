"""Standing (issue 14): served suggestions, audit slice, stop set, per-version estimates, autolabel runs.

A mixin of `suggest.store.Store`: its tables are created by SCHEMA_SQL when the store opens, and its
methods use the store's one connection (`self._tx()`, `self._query()`), so SQL stays in the store.
"""

from __future__ import annotations

SCHEMA_SQL = ""


class StandingStore:
    """Methods on `Store` for this part; see the module docstring."""

    def _migrate_standing(self) -> None:
        """Bring an older store's tables for this part up to date (idempotent; nothing by default)."""
