"""One exception type for mistakes a user can fix.

Anything raised as `UserError` reaches the user as one line (the CLI prints it and
exits with code 2; the HTTP services turn it into a 4xx). Everything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input (config, data, paths), not with the code."""
