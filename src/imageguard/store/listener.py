"""How an Apache process learns that a PostgreSQL ACL store changed: :class:`ChangeListener`,
a background thread on a connection of its own that ``LISTEN``\\ s for the store's
``NOTIFY`` (see :mod:`.postgres`).

The listener keeps one number, its *generation*, which it raises whenever the store's
change counter (``imageguard_meta.changes``) is not the one it last read. It reads the
counter at once after every notification, after every (re)connection, and every
:data:`POLL_S` besides, which also proves that the connection still works. A request
trusts the answers it remembers while the generation is the one they were found at and
the listener has heard from PostgreSQL within :data:`HEALTH_S`; that check is two
attribute reads and a clock read, never a query.

How stale a process can be:

* connected: until the notification arrives, a few milliseconds after the commit;
* a notification lost (it cannot be on a live connection, but the counter makes sure):
  one :data:`POLL_S`;
* the connection broken (PostgreSQL restarted, the network cut): the listener's next read
  fails, or no read succeeds for :data:`HEALTH_S`. From then on the process does not
  trust what it remembers: it refuses with 503, or with ``imageguard.stale_ok`` keeps the
  last known answers until PostgreSQL is back. After reconnecting, the counter tells
  whether anything changed meanwhile; if nothing did, nothing is forgotten.

So the worst case while PostgreSQL is reachable is :data:`POLL_S`; once it is not, at
most :data:`HEALTH_S` passes before the process stops answering from memory.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from ..errors import StoreUnavailable
from .postgres import CHANNEL, connect, first_line

#: How often the listener reads the change counter when no notification came.
POLL_S = 1.0
#: How long one wait for a notification lasts: how soon a suspicion or a stop is acted on.
TICK_S = 0.1
#: A listener not heard from PostgreSQL for this long is not trusted.
HEALTH_S = 3.0
#: The waits between attempts to reconnect, the last one repeated.
RETRY_S = (0.1, 0.25, 0.5, 1.0)


class ChangeListener:
    """One background connection that follows a PostgreSQL store's changes (see the
    module docstring). Started by :meth:`start`, in the process that uses it: a thread
    does not survive ``fork``, so a listener made before one starts anew in the child."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        #: Raised whenever the store changed; answers found at another one are stale.
        self.generation = 0
        #: Why the last connection or read failed ("" while connected).
        self.last_error = ""
        #: Raised at every connection: other connections older than it may be dead too.
        self.connections = 0
        self._counter: int | None = None
        self._confirmed_at = float("-inf")
        self._up = False
        self._suspect = False
        self._owner_pid = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()

    def current(self, now: float) -> int | None:
        """The generation, if the listener vouches for it at *now* (monotonic); else None."""
        if self._up and now - self._confirmed_at < HEALTH_S:
            return self.generation
        return None

    def start(self, wait: float) -> None:
        """Start the thread unless it runs in this process, and wait up to *wait* seconds
        for its first connection to succeed or fail."""
        with self._start_lock:
            if self._thread is None or self._owner_pid != os.getpid():
                self._owner_pid = os.getpid()
                self._up = False
                self._ready.clear()
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="imageguard-listener", daemon=True
                )
                self._thread.start()
        self._ready.wait(wait)

    def suspect(self) -> None:
        """Another connection failed: trust nothing until the listener has read the
        counter again (on its next tick)."""
        self._up = False
        self._suspect = True

    def stop(self, wait: float = 2.0) -> None:
        """End the thread (and its connection) and wait up to *wait* seconds for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)
        self._thread = None
        self._up = False

    # -- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            conn = None
            try:
                conn = connect(self.conninfo, purpose="listener")
                conn.execute(f"LISTEN {CHANNEL}")
                self.connections += 1
                self._read_counter(conn)
                attempt = 0
                self._follow(conn)
            except Exception as exc:  # psycopg's errors, StoreUnavailable: retried
                self._up = False
                self.last_error = (
                    exc.reason if isinstance(exc, StoreUnavailable) else first_line(exc)
                )
            finally:
                self._ready.set()
                if conn is not None:
                    _close_quietly(conn)
            self._stop.wait(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1

    def _follow(self, conn: Any) -> None:
        """Wait for notifications; read the counter after each, and every POLL_S."""
        while not self._stop.is_set():
            heard = False
            for _ in conn.notifies(timeout=TICK_S, stop_after=1):
                heard = True
            if heard or self._suspect or time.monotonic() - self._confirmed_at >= POLL_S:
                self._read_counter(conn)

    def _read_counter(self, conn: Any) -> None:
        self._suspect = False
        counter = int(conn.execute("SELECT changes FROM imageguard_meta").fetchone()[0])
        if counter != self._counter:
            self._counter = counter
            self.generation += 1
        self._confirmed_at = time.monotonic()
        self.last_error = ""
        self._up = True
        self._ready.set()


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection may fail to close; it is gone
        conn.close()
