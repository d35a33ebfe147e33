"""API authentication: bearer tokens, their file, and the ``tokens`` command."""
