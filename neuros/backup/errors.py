"""The one exception the tool expects."""


class BackupError(Exception):
    """An expected failure: the CLI prints its message as one line, no traceback."""
