"""CLI commands for live accuracy, stopping, drift and `suggest autolabel` (issue 14), registered by suggest.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `suggest` app."""
