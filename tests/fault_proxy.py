"""A TCP proxy in front of a database that a test can cut and restore, to see what the bot does when
its database goes away mid-request and comes back.

`cut()` drops every open connection (both sides) and closes any new one the moment it is accepted,
the way a database restart or a refused connection looks to a client; `pause()` holds every byte in
both directions (a network partition, or a database that stopped answering: TCP keeps the bytes, so
nothing fails, it just waits); `restore()` forwards again, paused bytes included.
The port stays bound throughout, so the engine's URL never changes. Loopback only, a bounded number
of connections, and it stops (closing everything) when its `with` block ends."""

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy.engine import make_url

from store.db import normalize_url

CHUNK = 64 * 1024
CONTROL_TIMEOUT = 10.0  # seconds a cut, restore or stop may take before the test is told
UPSTREAM_CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class FaultProxy:
    """`with FaultProxy() as proxy: engine = make_engine(proxy.url_for(url)); proxy.cut(); …`"""

    def __init__(
        self,
        upstream_host: str = "127.0.0.1",
        upstream_port: int = 5432,
        max_connections: int = 64,
    ) -> None:
        # Loopback only, both ways: a test tool, never a relay to or from another host.
        if not _loopback(upstream_host):
            raise ValueError(f"the fault proxy only forwards to loopback, not {upstream_host!r}")
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.port = 0
        self.accepted = 0  # connections forwarded upstream
        self.dropped = 0  # connections closed by a cut, or refused while cut or full
        self._cut = False
        self._flowing: asyncio.Event | None = None  # made on the proxy's loop; clear while paused
        self._generation = 0  # bumped by every cut: a link opened before it must not survive it
        self._links: set[asyncio.Task[None]] = set()  # one task per forwarded connection
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    # -- what a test calls ------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._call(self._start())
        except BaseException:
            self.stop()  # no thread or socket outlives a proxy that failed to start
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def url_for(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by the proxy's."""
        url = make_url(normalize_url(database_url))
        if url.host is not None and not _loopback(url.host):
            raise ValueError("the fault proxy only stands in front of a loopback database")
        return url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def cut(self) -> int:
        """Drop every open connection and refuse new ones until `restore`; how many were dropped."""
        return self._call(self._do_cut())

    def pause(self) -> None:
        """Hold every byte, on open connections and new ones, until `restore`."""
        self._call(self._do_pause())

    def restore(self) -> None:
        """Forward again: new connections are accepted, paused bytes go through."""
        self._call(self._do_restore())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    # -- the loop's side --------------------------------------------------------------------------
    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _do_cut(self) -> int:
        self._cut = True
        self._generation += 1
        links = list(self._links)
        for task in links:
            task.cancel()
        # Wait for the links to have closed their sockets, so `cut()` returns with the database gone.
        await asyncio.gather(*links, return_exceptions=True)
        self.dropped += len(links)
        return len(links)

    async def _do_pause(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    async def _do_restore(self) -> None:
        assert self._flowing is not None
        self._cut = False
        self._flowing.set()

    async def _shutdown(self) -> None:
        await self._do_cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut or len(self._links) >= self.max_connections:
            self.dropped += 1
            writer.transport.abort()
            return
        # The link runs in a task of its own that a cut cancels: cancelling the task asyncio made for
        # this callback makes Python 3.11's streams log a spurious traceback.
        link = asyncio.create_task(self._link(reader, writer, self._generation))
        self._links.add(link)
        try:
            await asyncio.wait([link])
        finally:
            self._links.discard(link)

    async def _link(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._wait_flowing()  # a paused database does not even answer the handshake
            up_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), UPSTREAM_CONNECT_TIMEOUT
            )
            if generation != self._generation:
                return  # cut while connecting upstream
            self.accepted += 1
            pipes = [
                asyncio.create_task(self._pipe(reader, upstream)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            ]
            try:
                # Either side closing ends the link: a half-open database connection helps no one.
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except (OSError, TimeoutError):
            pass
        finally:
            # abort, not close: a cut is abrupt, and nothing buffered may still reach the other side.
            writer.transport.abort()
            if upstream is not None:
                upstream.transport.abort()

    async def _wait_flowing(self) -> None:
        assert self._flowing is not None
        await self._flowing.wait()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while chunk := await source.read(CHUNK):
                await self._wait_flowing()
                sink.write(chunk)
                await sink.drain()
