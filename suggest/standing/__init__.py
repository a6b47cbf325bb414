"""Where a project stands (issue 14): live accuracy estimates with 95% intervals, the learning curve, the
stopping signal, drift, and auto-accept at a stated accuracy. Computed after each version by the analysis
worker (analyst.py) from the store; the server, CLI and dashboard only read what it stored."""
