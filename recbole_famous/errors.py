"""The exceptions a user sees, each with the exit code the command line gives it (one line, no traceback).

They sit at the bottom of the package so every layer can raise them and the command line, the launcher and the
benchmark can catch them without importing the layer that raised them.
"""

import signal


class UsageError(Exception):
    """Bad input from the user: an unknown name, a missing or broken file, an invalid setting (exit code 2)."""

    exit_code = 2


class MissingResource(UsageError):
    """A file the package ships is not there: the install is incomplete (e.g. a wheel without its package data)."""


class NonFiniteLoss(Exception):
    """A loss part or a gradient became NaN or inf; the parameters were not updated with it (exit code 1)."""

    exit_code = 1


class TrainingInterrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM arrived during training; the checkpoints on disk are whole (exit code 128 +
    the signal's number). The trainer records how far the run got, so the message says how to resume it."""

    def __init__(self, signum: int, epochs_done: int | None = None, checkpoint: str | None = None,
                 best_epoch: int | None = None):
        self.signum = int(signum)
        self.epochs_done, self.checkpoint, self.best_epoch = epochs_done, checkpoint, best_epoch
        self.detail = None  # a message that replaces the composed one (e.g. relayed from another process)
        super().__init__(signum, epochs_done, checkpoint, best_epoch)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def resume_hint(self) -> str | None:
        """The command-line option that continues the run, when a checkpoint was kept."""
        return f"--resume={self.checkpoint}" if self.checkpoint else None

    def __str__(self):
        if self.detail:
            return self.detail
        text = f"training interrupted by {signal.Signals(self.signum).name}"
        if self.epochs_done is None:
            return text
        text += f" after {self.epochs_done} completed epoch(s)"
        if self.checkpoint:
            return (text + f"; best checkpoint kept: {self.checkpoint} (epoch {self.best_epoch}); "
                    f"continue with {self.resume_hint}")
        return text + "; no checkpoint had been saved yet"


class SourceError(Exception):
    """A dataset's source file cannot be converted (``recbole_famous.data``); the message names the file and,
    where known, the line."""

    exit_code = 2

    def __init__(self, path, message, line=None):
        self.path, self.line, self.reason = str(path), line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class DatasetNotPrepared(RuntimeError):
    """A dataset's atomic files are missing and cannot be built; the message says how to fix it."""

    exit_code = 2


def exit_code(exc: BaseException) -> int | None:
    """The command line's exit code for ``exc``, or None for an exception that is a bug (it keeps its traceback):
    2 bad input, 1 a non-finite loss, 128 + N a signal (130 for Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    code = getattr(exc, "exit_code", None)
    return int(code) if code is not None else None


def run_main(body, *, interrupted: str = "", bad_input=()) -> int:
    """The one exception-to-exit-code handler of every command line (``run_recbole_famous.py``, ``recommend``,
    ``tune``, ``bench``, ``data``): ``body()`` returns the exit code; a known exception becomes one line on stderr
    (``error: ...`` or ``interrupted: ...``, then ``interrupted``, what is kept and how to continue) and its exit
    code. ``bad_input``: further exception types that mean bad input there (exit 2; e.g. ``OSError`` for a
    converter's files)."""
    import sys

    try:
        return body()
    except BaseException as exc:  # noqa: BLE001 - mapped below, or re-raised
        code = 2 if isinstance(exc, tuple(bad_input)) and exit_code(exc) is None else exit_code(exc)
        if code is None:
            raise
        if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
            text = f"interrupted: {exc}" if str(exc) else "interrupted"
            print(text + (f" ({interrupted})" if interrupted else ""), file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return code
