"""The one error type for bad input: it names the file, the key, the line and what was expected."""

from __future__ import annotations


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
        return f"{where}{key}{self.message}"
