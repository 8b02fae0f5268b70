"""The session's waker (wakers.py `Waker`, and imap/session.py's `_Waker` over it): a read
in the session's own task that news (a change in IDLE, shutdown) interrupts without losing
input, while any other cancellation and the timeout behave as usual, and a read that is not
wakeable is not interrupted. Plus: every IDLE session on a server is woken by shutdown
through one watcher, which goes away with the last session."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from postroom.imap.session import READ_SIZE, ImapServer, _Waker
from tests.imap.conftest import PASSWORD, USER, ImapThread, RawClient


async def _reading(reader: asyncio.StreamReader, seconds: float = 5.0, *,
                   wakeable: bool = True) -> tuple[_Waker, asyncio.Task[bytes | None]]:
    box: list[_Waker] = []

    async def session() -> bytes | None:
        box.append(_Waker())
        return await box[0].read(reader, READ_SIZE, seconds, wakeable=wakeable)

    task = asyncio.ensure_future(session())
    await asyncio.sleep(0)  # let it reach the read
    return box[0], task


async def test_data_is_returned() -> None:
    reader = asyncio.StreamReader()
    _, task = await _reading(reader)
    reader.feed_data(b"a NOOP\r\n")
    assert await task == b"a NOOP\r\n"


async def test_wake_returns_none_and_keeps_later_input() -> None:
    reader = asyncio.StreamReader()
    waker, task = await _reading(reader)
    waker.wake()
    assert await task is None
    assert task.cancelling() == 0  # our own cancellation was taken back
    reader.feed_data(b"DONE\r\n")
    assert await reader.read(100) == b"DONE\r\n"


async def test_input_arriving_with_the_wake_is_not_lost() -> None:
    reader = asyncio.StreamReader()
    waker, task = await _reading(reader)
    reader.feed_data(b"DONE\r\n")  # the read is done, the task not yet resumed
    waker.wake()
    result = await task
    if result is None:  # woken first: the input waits in the reader
        result = await reader.read(100)
    assert result == b"DONE\r\n"


async def test_wake_outside_a_read_does_nothing() -> None:
    reader = asyncio.StreamReader()
    waker, task = await _reading(reader)
    reader.feed_data(b"x")
    assert await task == b"x"
    waker.wake()  # nothing is being read: must not cancel anything later
    waker.on_change()
    assert not waker._is_woken


async def test_a_read_that_is_not_wakeable_is_not_woken() -> None:
    """An SMTP body in flight: shutdown waits for it."""
    reader = asyncio.StreamReader()
    waker, task = await _reading(reader, wakeable=False)
    waker.wake()
    await asyncio.sleep(0.01)
    assert not task.done()
    reader.feed_data(b"body")
    assert await task == b"body"


async def test_changes_wake_only_when_wanted() -> None:
    reader = asyncio.StreamReader()
    waker, task = await _reading(reader)
    waker.on_change()  # between commands a change is not news
    await asyncio.sleep(0)
    assert not task.done()
    waker.wants_changes = True
    waker.on_change()
    assert await task is None


async def test_other_cancellation_propagates_even_with_a_wake() -> None:
    reader = asyncio.StreamReader()
    waker, task = await _reading(reader)
    waker.wake()
    task.cancel()  # e.g. the drain deadline at shutdown, in the same loop iteration
    with pytest.raises(asyncio.CancelledError):
        await task
    _, task = await _reading(reader)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_timeout() -> None:
    reader = asyncio.StreamReader()
    _, task = await _reading(reader, seconds=0.01)
    with pytest.raises(TimeoutError):
        await task


def test_shutdown_wakes_every_idle_session(imap_server: ImapThread,
                                           client_tls: ssl.SSLContext) -> None:
    server = ImapServer(imap_server.rt, True)

    async def listen() -> asyncio.Server:
        return await asyncio.start_server(server.handle_connection, "127.0.0.1", 0,
                                          ssl=imap_server.rt.tls.listener_context())

    listener = imap_server.call(listen())
    port = listener.sockets[0].getsockname()[1]
    clients = []
    for _ in range(3):
        client = RawClient(port, tls=client_tls)
        client.command(b"L", f'LOGIN "{USER}" "{PASSWORD}"'.encode())
        client.command(b"s", b"SELECT INBOX")
        client.send(b"i IDLE\r\n")
        assert client.line() == b"+ idling"
        clients.append(client)
    assert len(server._wakers) == 3 and server._wakers.is_watching

    async def shut_down() -> None:
        imap_server.rt.shutting_down.set()

    imap_server.call(shut_down())
    for client in clients:
        assert client.line() == b"* BYE postroom shutting down"
        client.close()

    async def watch_gone() -> None:  # the watcher ends with the last session
        while server._wakers or server._wakers.is_watching:
            await asyncio.sleep(0.01)
        listener.close()

    imap_server.call(asyncio.wait_for(watch_gone(), 10))
