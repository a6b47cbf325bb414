"""Model families behind the Backend interface (backends/base.py)."""
