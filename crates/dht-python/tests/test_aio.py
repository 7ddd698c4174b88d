"""rdht.aio: await get/put/ping/shutdown, async iteration over get and listen, and
cancellation of the awaiting task cancelling the operation."""

import asyncio

import pytest

import rdht as dht
from rdht import aio
from conftest import LOOP4, LOOP6, wait_for


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connected_pair():
    a = aio.DhtRunner()
    a.run(ipv4=LOOP4, ipv6=LOOP6)
    b = aio.DhtRunner(bootstrap=[(LOOP4, a.getBound().getPort())])
    b.run(ipv4=LOOP4, ipv6=LOOP6)
    while b.getStatus() != "connected":
        await asyncio.sleep(0.01)
    return a, b


async def close(*nodes):
    for n in nodes:
        await n.shutdown()
        await n.join()


def test_await_put_get_and_iterate():
    async def main():
        a, b = await connected_pair()
        key = dht.InfoHash.get("aio")
        v = dht.Value(b"async")
        assert await a.put(key, v) is True and v.id
        values = await b.get(key)
        assert [x.data for x in values] == [b"async"]
        assert [x.data async for x in b.get(key)] == [b"async"]
        assert [x.data for x in await b.getAll(key)] == [b"async"]
        first = await b.getFirst(key, predicate=lambda x: x.data == b"async")
        assert first is not None and first.data == b"async"
        assert await b.ping(a.getBound()) is True
        assert isinstance(b.getNodeId(), dht.InfoHash)  # forwarded to the core runner
        await close(a, b)

    run(main())


def test_async_for_listen_and_cancel():
    async def main():
        a, b = await connected_pair()
        key = dht.InfoHash.get("aio listen")
        got = []
        async with b.listen(key) as listener:
            await a.put(key, dht.Value(b"1"))
            async for value, expired in listener:
                got.append((value.data, expired))
                if len(got) == 1:
                    await a.put(key, dht.Value(b"2"))
                else:
                    break
        assert got == [(b"1", False), (b"2", False)]
        assert listener._token.cancelled  # leaving the block cancelled it
        # cancelling the task iterating a listen cancels the listen
        other = b.listen(key)

        async def consume():
            async for _ in other:
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        while other._token is None:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert other._token.cancelled
        await b.cancelListen(b.listen(key))
        await close(a, b)

    run(main())


def test_cancelling_a_get_task_cancels_the_get(hole):
    async def main():
        a = aio.DhtRunner()
        a.run(ipv4=LOOP4)
        a.bootstrap(LOOP4, hole)  # the get would wait ~10 s for this silent peer
        stream = a.get(dht.InfoHash.get("slow"))
        task = asyncio.ensure_future(stream._all())
        while stream._token is None:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream._finished
        await close(a)

    run(main(), timeout=8)


def test_cancelling_a_put_task_withdraws_the_put(hole):
    async def main():
        a = aio.DhtRunner()
        a.run(ipv4=LOOP4)
        a.bootstrap(LOOP4, hole)
        key = dht.InfoHash.get("withdrawn")
        v = dht.Value(b"w")
        task = asyncio.ensure_future(a.put(key, v, permanent=True))
        while not v.id:
            await asyncio.sleep(0.01)
        wait_for(lambda: f"id:{v.id:x}" in a.getStorageLog(), 5, "the local copy")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while f"id:{v.id:x}" in a.getStorageLog():
            await asyncio.sleep(0.01)
        await close(a)

    run(main(), timeout=8)


def test_failed_get_raises_and_context_manager_runs():
    async def main():
        async with aio.DhtRunner() as node:  # runs (all addresses) and shuts down
            assert node.isRunning()
            with pytest.raises(RuntimeError, match="DHT get failed"):
                await node.get(dht.InfoHash.get("nobody"))
        assert not node.isRunning()

    run(main())
