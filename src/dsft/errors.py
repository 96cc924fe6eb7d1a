"""User-facing errors.

Anything a user can cause (a bad file, a bad flag) raises `UserError`; the CLI prints its
message and fix and exits with its code, never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; `fix` says how, `exit_code` is what the CLI returns."""

    def __init__(self, message: str, fix: str = "", exit_code: int = 2):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message
