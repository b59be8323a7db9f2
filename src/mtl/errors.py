"""Errors a user can cause. The CLI prints their message as one line and exits non-zero."""


class UserError(Exception):
    """A mistake in the user's input: the message names the thing and the fix."""

    exit_code = 2
