"""The engine's exceptions: one root, config errors on their own branch.

Subclasses also inherit the builtin they mean, so callers may catch either.
Config errors never pass through a per-message handler: those catch
`DeliveryError` and `DataError`, never `ConfigError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file the marketer edits: where and what."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ConfigError(EngineError, ValueError):
    """The config, a campaign, a segment or a template is invalid.

    Carries every problem found, not just the first.
    """

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DataError(EngineError, ValueError):
    """Shop data (a customer, product or order) is invalid or inconsistent."""


class UnknownRecord(DataError, LookupError):
    """A customer, product or order referred to does not exist."""


class StoreError(EngineError, RuntimeError):
    """The database failed or is unreachable (the driver's error is chained)."""


class DeliveryError(EngineError, RuntimeError):
    """Rendering, composing or sending one message failed."""


class RenderError(DeliveryError):
    """One email could not be rendered; the message says which template, line and why."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        super().__init__(message)


class LockHeld(EngineError, RuntimeError):
    """Another process holds the lock this one needs."""
