"""Exceptions of the data layer: one for bad source files, one for a dataset that is not there."""


class SourceError(Exception):
    """A source file cannot be converted; the message names the file and, where known, the line."""

    def __init__(self, path, message, line=None):
        self.path, self.line, self.reason = str(path), line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class DatasetNotPrepared(RuntimeError):
    """A dataset's atomic files are missing and cannot be built; the message says how to fix it."""
