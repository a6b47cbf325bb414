"""suggest: an active-learning label suggestion engine behind Label Studio."""

__version__ = "0.1.0"
