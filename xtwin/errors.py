"""Project exceptions.

``XtwinInputError`` is what a user can fix (a missing file, a wrong shape, a malformed
scenario): the CLI prints its message and exits with code 2, without a traceback. Anything
else that escapes is an internal error (exit code 1).
"""


class XtwinError(Exception):
    """Base class of all xtwin exceptions."""


class XtwinInputError(XtwinError, ValueError):
    """Bad input: the message names the problem and the fix."""
