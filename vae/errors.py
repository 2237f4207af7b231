"""Errors the command line turns into one line and exit code 2."""


class UsageError(ValueError):
    """Bad user input: a flag value, a path, or a data file that is not what was expected."""


class DataError(UsageError):
    """A data file is missing, truncated or malformed; the message names the file."""
