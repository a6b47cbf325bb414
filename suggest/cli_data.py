"""CLI commands for `suggest export`, `stats` and `config` (issue 18); `suggest.cli` registers them on its app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `suggest` app."""
