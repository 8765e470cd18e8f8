"""Ctrl-C during training: the first one asks the loop to stop after the current step, a second one aborts.

Under torchrun the processes agree on stopping at the loop's next sync point (at most ``train.log_every`` steps
later), so that all of them leave the loop at the same step.

Loader worker processes are forked from the training process and would inherit its handler (each printing
"stopping…"); :func:`ignore_sigint_in_worker`, called by every worker at start, makes them ignore SIGINT: the
training process alone decides, and shuts them down as it stops.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_MESSAGE = "\nCtrl-C: stopping… after this step, saving last.pt (press Ctrl-C again to abort at once)"


class StopRequest:
    """A flag set by the first Ctrl-C while :meth:`installed` is active (main thread only)."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce  # print STOP_MESSAGE (the main process of a DDP run only)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print(STOP_MESSAGE, flush=True)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Catch SIGINT for the duration (a no-op outside the main thread, where signals cannot be caught)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def ignore_sigint_in_worker() -> None:
    """For a data-loader worker: Ctrl-C is the training process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
