"""A connection that has not sent a request's headers within HEADER_SECONDS is closed.

uvicorn times a connection out only between requests (`timeout_keep_alive`, from when a response is
sent). One that is opened and says nothing, or sends its headers a byte at a time, was kept for good,
and enough of them use up the process's file descriptors, after which no platform can connect. A
proxy in front may time them out itself; `serve` does not count on one. The platforms and browsers
send a request's headers at once."""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_SECONDS = 10.0


class HeadersInTime(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline from the connection (or from the first byte of a
    request after the last) to the end of that request's headers."""

    header_seconds = HEADER_SECONDS
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
