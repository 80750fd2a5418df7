"""Errors the command line turns into one clear line and exit code 2 (no traceback from inside RecBole)."""


class UsageError(Exception):
    """Bad input from the user: an unknown name, a missing or broken file, an invalid setting."""
