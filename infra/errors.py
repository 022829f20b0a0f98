"""Errors the CLI reports as one clear line, without a traceback."""


class UserError(Exception):
    """A mistake the user can fix: bad input, missing credentials, a port in use.

    The message says what was wrong and what to do next.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
