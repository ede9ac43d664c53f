"""The one error type for bad input: it names the file, the key, the line and what was expected.

Three classes live here so that every layer can use them without importing the schemas:

* :class:`SpecError` - bad user input; the CLI prints ``str(err)`` (one line) and exits 2.
* :class:`FieldError` - raised *inside* a pydantic validator to say which key is wrong, so the
  loader can report that key's YAML line instead of the line of the enclosing mapping.
* :class:`SpecWarning` - a spec that loads but looks wrong; it too can carry a key path.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A key path into a YAML document: mapping keys and list indices, e.g. ``("memory", 0, "name")``.
Loc = tuple[int | str, ...]


def one_line(text: str) -> str:
    """Collapse newlines and runs of spaces: every message the CLI prints is a single line."""
    return " ".join(str(text).split())


def format_loc(loc: Sequence[int | str]) -> str:
    """``("memory", 0, "latency")`` → ``memory[0].latency``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class SpecError(Exception):
    """Bad user input: a spec file, a CLI option or a workload that cannot be used.

    ``str(err)`` is one line such as
    ``devices/h100-sxm.yaml:12: memory[1].bandwidth: expected a bandwidth such as '3.35 TB/s'``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        return one_line(f"{where}{key}{self.message}")


class FieldError(ValueError):
    """A validator's complaint about one key, given as a path relative to the model validated.

    Raise it from a pydantic ``model_validator`` (it is a ``ValueError``, so pydantic wraps it);
    :func:`hwsim.spec.load.validate` finds it again and reports ``loc``'s file line and path.
    Example: ``raise FieldError(("memory", 2, "name"), "level names must be unique")``.
    """

    def __init__(self, loc: Sequence[int | str], message: str) -> None:
        self.loc: Loc = tuple(loc)
        self.message = message
        super().__init__(f"{format_loc(self.loc)}: {message}" if self.loc else message)


class SpecWarning(UserWarning):
    """A spec that loads but looks wrong (e.g. an inner memory level larger than an outer one).

    ``loc`` (a key path, as for :class:`FieldError`) lets the loader prefix ``file:line: key:``.
    """

    def __init__(self, message: str, loc: Sequence[int | str] = ()) -> None:
        self.message = message
        self.loc: Loc = tuple(loc)
        super().__init__(message)


class MissingEntryError(SpecError, KeyError):
    """A lookup of something a spec does not define (a memory level, a dtype's peak rate).

    It is a :class:`KeyError` for callers that probe, and a :class:`SpecError` so that an
    uncaught one prints as one clear line in the CLI instead of an internal error.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return SpecError.__str__(self)
