"""The one error type for mistakes a user can cause."""


class LpsbookError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do.

    The command line prints the message and exits with status 2, without a
    traceback.
    """
