"""An injected clock: stands in for the `time` module, or for `django.utils.timezone`, inside one production module,
so that a test moves time forward instead of sleeping. Only what the module asks of it changes; timers on the
event loop and the JWT library's own checks keep the real clock."""

import time
from datetime import UTC, datetime


class Clock:
    """time.time(), time.monotonic() and timezone.now() that move only when the test calls advance()."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._wall, self._mono = time.time(), time.monotonic()

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return self._wall + self.offset

    def monotonic(self) -> float:
        return self._mono + self.offset

    def now(self) -> datetime:
        """timezone.now() with USE_TZ: an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), tz=UTC)
