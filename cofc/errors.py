"""Errors a user can cause and fix. The CLI prints these as one line and exits non-zero."""


class CofcError(Exception):
    """A user-facing error: bad input, missing data, a refused bundle. Never a bug."""


class PlanError(CofcError):
    """A plan.yaml problem, located by file, field and (when YAML gives it) line."""

    def __init__(self, path: str, field: str, message: str, line: int | None = None):
        self.path, self.field, self.message, self.line = path, field, message, line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {field}: {message}")


class DataError(CofcError):
    """A user's data file or folder that cannot be used as it is; the message names it (and the
    line, where it has one)."""
