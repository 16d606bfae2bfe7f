"""Warning and critical limits of the health checks, and how a limit given alone moves the other.

Messages name the limits by their field names (`warn_queue_age`); a caller that exposes them
under other names (the CLI's flags) passes its own `name` function to `describe()`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from matokit.errors import UsageError

# (warning, critical) threshold pairs: the warning must not exceed the critical one.
THRESHOLD_PAIRS = (
    ("warn_latency", "crit_latency"),
    ("warn_queue_age", "crit_queue_age"),
    ("warn_queue_depth", "crit_queue_depth"),
)

Namer = Callable[[str], str]


def _field_name(name: str) -> str:
    return name


class ThresholdError(UsageError):
    """A threshold pair is negative, or its warning limit is above its critical limit."""

    def __init__(self, low: str, high: str, low_value: float, high_value: float) -> None:
        self.low, self.high = low, high
        self.low_value, self.high_value = low_value, high_value
        message, hint = self.describe()
        super().__init__(message, hint=hint)

    def describe(self, name: Namer = _field_name) -> tuple[str, str | None]:
        """(message, hint) naming the limits with `name`."""
        if self.low_value < 0 or self.high_value < 0:
            return f"{name(self.low)} and {name(self.high)} must not be negative.", None
        return (
            f"{name(self.low)} ({limit_text(self.low, self.low_value)}) is above "
            f"{name(self.high)} ({limit_text(self.high, self.high_value)}).",
            "the warning threshold must not exceed the critical one",
        )


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical limits (seconds and hit counts)."""

    warn_latency: float = 2.0
    crit_latency: float = 5.0
    warn_queue_age: float = 3600.0
    crit_queue_age: float = 6 * 3600.0
    warn_queue_depth: float = 1000
    crit_queue_depth: float = 10000
    # replay-access warns when a queued hit is older than this and the token cannot replay it.
    replay_warn_age: float = 20 * 3600.0

    def __post_init__(self) -> None:
        for low, high in THRESHOLD_PAIRS:
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value < 0 or high_value < 0 or low_value > high_value:
                raise ThresholdError(low, high, low_value, high_value)


@dataclass(frozen=True)
class MovedDefault:
    """A limit given alone crossed the other's default, which moved to the same value."""

    given: str
    moved: str
    value: float
    default: float

    def describe(self, name: Namer = _field_name) -> str:
        """The note, naming the limits with `name`."""
        side = "above" if self.given.startswith("warn_") else "below"
        return (
            f"{name(self.given)} {limit_text(self.given, self.value)} is {side} the default "
            f"{name(self.moved)} ({limit_text(self.moved, self.default)}): {name(self.moved)} "
            f"is {limit_text(self.moved, self.value)} too."
        )


def thresholds_from(given: Mapping[str, float]) -> tuple[Thresholds, list[MovedDefault]]:
    """Thresholds from the limits given (by field name), and the defaults moved.

    A limit given alone moves the other one's default when they would cross, so that the pair
    stays ordered: `crit_queue_age` 1s alone also warns from 1s. Both given and crossed is a
    ThresholdError (Thresholds refuses it).
    """
    values = dict(given)
    defaults = Thresholds()
    moved_defaults: list[MovedDefault] = []
    for low, high in THRESHOLD_PAIRS:
        if (low in values) == (high in values):
            continue
        kept, moved = (low, high) if low in values else (high, low)
        value = values[kept]
        default = getattr(defaults, moved)
        crossed = value > default if kept == low else value < default
        if crossed and value >= 0:
            values[moved] = value
            moved_defaults.append(MovedDefault(kept, moved, value, default))
    return Thresholds(**values), moved_defaults


def limit_text(name: str, value: float) -> str:
    """A limit as the user writes it: a count, or a duration (`90s`, `2h`)."""
    if "depth" in name:
        return f"{value:g}"
    from matokit.durations import format_duration

    return format_duration(value) if value >= 60 else f"{value:g}s"
