"""asyncio forms of the rdht API (upstream's ``opendht.aio``).

``await node.get(key)`` gives a list of values, ``async for value in node.get(key)`` streams
them; ``async for value, expired in node.listen(key)`` follows a key; ``await node.put(key,
value)`` gives ``True`` once stored. Cancelling the task that awaits cancels the operation (the
get or listen stops, a put is withdrawn). Callbacks from the runner's thread reach the event
loop through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable, List, Optional, Tuple, Union

from . import (  # noqa: F401  (re-exported, as upstream's aio does)
    DhtConfig,
    Identity,
    InfoHash,
    PkId,
    PublicKey,
    SockAddr,
    Value,
    ValueType,
    Where,
)
from . import DhtRunner as _CoreRunner

__all__ = [
    "DhtRunner",
    "DhtConfig",
    "Identity",
    "InfoHash",
    "PkId",
    "PublicKey",
    "SockAddr",
    "Value",
    "ValueType",
    "Where",
]

_DONE = object()


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Runs ``fn(*args)`` on ``loop`` from the runner's thread; a closed loop drops it."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def _set_result(fut: "asyncio.Future[Any]", value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


class _GetStream:
    """The values of one get: ``await`` it for a list, or ``async for`` over it.

    The get starts on first use. It ends with the get; a get that fails (no node answered)
    raises ``RuntimeError("DHT get failed")``. Cancelling the awaiting task, leaving an
    ``async with`` block or calling ``cancel()`` stops the get.
    """

    def __init__(self, runner: "DhtRunner", key: InfoHash, where: Optional[Where],
                 filter: Optional[Callable[[Value], bool]]):
        self._runner = runner
        self._key = key
        self._where = where
        self._filter = filter
        self._queue: Optional[asyncio.Queue] = None
        self._token: Any = None
        self._finished = False

    def _start(self) -> None:
        if self._queue is not None:
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        self._queue = queue

        def on_value(v: Value) -> bool:
            _post(loop, queue.put_nowait, v)
            return True

        def on_done(ok: bool, nodes: list) -> None:
            _post(loop, queue.put_nowait, (_DONE, ok))

        self._token = self._runner.core.get(self._key, on_value, on_done, self._filter, self._where)

    def cancel(self) -> None:
        """Stops the get."""
        if self._token is not None and not self._finished:
            self._finished = True
            self._token.cancel()

    def __aiter__(self) -> "_GetStream":
        return self

    async def __anext__(self) -> Value:
        if self._finished:
            raise StopAsyncIteration
        self._start()
        assert self._queue is not None
        try:
            item = await self._queue.get()
        except asyncio.CancelledError:
            self.cancel()
            raise
        if isinstance(item, tuple) and len(item) == 2 and item[0] is _DONE:
            self._finished = True
            if not item[1]:
                raise RuntimeError("DHT get failed")
            raise StopAsyncIteration
        return item

    async def _all(self) -> List[Value]:
        return [v async for v in self]

    def __await__(self):
        return self._all().__await__()

    async def __aenter__(self) -> "_GetStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()


class _Listener:
    """A listen: ``async for value, expired in listener``. It runs until ``cancel()``, the end
    of an ``async with`` block, or the cancellation of the task iterating it."""

    def __init__(self, runner: "DhtRunner", key: InfoHash, where: Optional[Where]):
        self._runner = runner
        self._key = key
        self._where = where
        self._queue: Optional[asyncio.Queue] = None
        self._token: Any = None
        self._cancelled = False

    def _start(self) -> None:
        if self._queue is not None:
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        self._queue = queue

        def on_value(v: Value, expired: bool) -> bool:
            if self._cancelled:
                return False
            _post(loop, queue.put_nowait, (v, expired))
            return True

        self._token = self._runner.core.listen(self._key, on_value, self._where)

    def cancel(self) -> None:
        """Stops the listen."""
        if not self._cancelled:
            self._cancelled = True
            if self._token is not None:
                self._token.cancel()

    def __aiter__(self) -> "_Listener":
        self._start()
        return self

    async def __anext__(self) -> Tuple[Value, bool]:
        if self._cancelled:
            raise StopAsyncIteration
        self._start()
        assert self._queue is not None
        try:
            return await self._queue.get()
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def __aenter__(self) -> "_Listener":
        self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()


class DhtRunner:
    """An asyncio front for ``rdht.DhtRunner``. Other attributes are those of the core runner
    (``getNodeId``, ``getBound``, ...). ``async with DhtRunner() as node:`` runs it (if not
    running) and shuts it down and joins it at the end."""

    def __init__(self, *, loop: Optional[asyncio.AbstractEventLoop] = None,
                 core: Optional[_CoreRunner] = None, config: Optional[DhtConfig] = None,
                 bootstrap: Optional[Iterable[Tuple[str, Optional[Union[str, int]]]]] = None):
        self._loop = loop
        self.core = core if core is not None else _CoreRunner()
        self._config = config
        self._bootstrap = list(bootstrap or [])

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    def run(self, id: Optional[Identity] = None, is_bootstrap: bool = False, port: int = 0,
            ipv4: str = "", ipv6: str = "", config: Optional[DhtConfig] = None) -> None:
        """Starts the node (see ``rdht.DhtRunner.run``), then bootstraps the given nodes."""
        self.core.run(id=id, is_bootstrap=is_bootstrap, port=port, ipv4=ipv4, ipv6=ipv6,
                      config=config or self._config)
        for host, port_ in self._bootstrap:
            self.core.bootstrap(host, port_)

    def bootstrap(self, host: str, port: Optional[Union[str, int]] = None) -> None:
        """Joins the network through ``host``:``port``."""
        self.core.bootstrap(host, port)

    def get(self, key: InfoHash, *, where: Optional[Where] = None,
            filter: Optional[Callable[[Value], bool]] = None) -> _GetStream:
        """The values at ``key``: ``await`` it for a list, or ``async for`` over it."""
        return _GetStream(self, key, where, filter)

    def listen(self, key: InfoHash, *, where: Optional[Where] = None) -> _Listener:
        """Follows ``key``: ``async for value, expired in node.listen(key)``."""
        return _Listener(self, key, where)

    async def cancelListen(self, listener: _Listener) -> None:
        """Stops ``listener`` (upstream's version of this raises ``TypeError``)."""
        listener.cancel()

    async def getAll(self, key: InfoHash, *, where: Optional[Where] = None,
                     filter: Optional[Callable[[Value], bool]] = None) -> List[Value]:
        """Every value at ``key``."""
        return await self.get(key, where=where, filter=filter)

    async def getFirst(self, key: InfoHash, *, where: Optional[Where] = None,
                       predicate: Optional[Callable[[Value], Union[bool, Awaitable[bool]]]] = None,
                       filter: Optional[Callable[[Value], bool]] = None) -> Optional[Value]:
        """The first value at ``key`` (for which ``predicate``, possibly async, is true), or
        ``None``; the get stops there."""
        async with self.get(key, where=where, filter=filter) as stream:
            async for v in stream:
                if predicate is None:
                    return v
                r = predicate(v)
                if asyncio.iscoroutine(r) or isinstance(r, asyncio.Future):
                    r = await r
                if r:
                    return v
        return None

    async def _put(self, method: Callable[..., Any], key: InfoHash, val: Value,
                   *args: Any, permanent: bool) -> bool:
        loop = self._get_loop()
        fut: asyncio.Future = loop.create_future()

        def done(ok: bool, nodes: list) -> None:
            _post(loop, _set_result, fut, ok)

        method(key, val, *args, done_cb=done, permanent=permanent)
        try:
            return await fut
        except asyncio.CancelledError:
            self.core.cancelPut(key, val)
            raise

    async def put(self, key: InfoHash, val: Value, *, permanent: bool = False) -> bool:
        """Puts ``val`` at ``key``; ``True`` once stored. Cancelling withdraws it."""
        return await self._put(self.core.put, key, val, permanent=permanent)

    async def putSigned(self, key: InfoHash, val: Value, *, permanent: bool = False) -> bool:
        """``put``, signed with the runner's identity."""
        return await self._put(self.core.putSigned, key, val, permanent=permanent)

    async def putEncrypted(self, key: InfoHash, to: Union[PublicKey, InfoHash], val: Value, *,
                           permanent: bool = False) -> bool:
        """``put``, encrypted to ``to`` (note the order: ``to`` before ``val``, as upstream)."""
        return await self._put(self.core.putEncrypted, key, val, to, permanent=permanent)

    async def ping(self, addr: SockAddr) -> bool:
        """``True`` when ``addr`` answers a ping."""
        loop = self._get_loop()
        fut: asyncio.Future = loop.create_future()
        self.core.ping(addr, lambda ok: _post(loop, _set_result, fut, ok))
        return await fut

    async def shutdown(self) -> None:
        """Stops the node, letting pending puts finish; returns when done."""
        loop = self._get_loop()
        fut: asyncio.Future = loop.create_future()
        self.core.shutdown(lambda: _post(loop, _set_result, fut, None))
        await fut

    async def join(self) -> None:
        """Waits for the node's thread to end (in a worker thread)."""
        await self._get_loop().run_in_executor(None, self.core.join)

    async def __aenter__(self) -> "DhtRunner":
        if not self.core.isRunning():
            self.run()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.shutdown()
        await self.join()
