"""Shared fixtures: loopback runners that are always joined, and a condition wait."""

import socket
import time

import pytest

import rdht as dht

LOOP4 = "127.0.0.1"
LOOP6 = "::1"


def wait_for(cond, timeout=10.0, what="condition"):
    """Polls ``cond()`` until it is truthy (returns its value) or fails after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Nodes:
    """Makes loopback runners and joins every one at the end of the test."""

    def __init__(self):
        self.all = []

    def new(self, bootstrap=None, **run_kwargs):
        r = dht.DhtRunner()
        run_kwargs.setdefault("ipv4", LOOP4)
        run_kwargs.setdefault("ipv6", LOOP6)
        r.run(**run_kwargs)
        self.all.append(r)
        if bootstrap is not None:
            r.bootstrap(LOOP4, str(bootstrap.getBound().getPort()))
        return r

    def network(self, n, **run_kwargs):
        first = self.new(**run_kwargs)
        rest = [self.new(bootstrap=first, **run_kwargs) for _ in range(n - 1)]
        nodes = [first] + rest
        # The first node counts as connected only once one of its own requests is answered
        # (its maintenance, seconds away); the others are as soon as it answers them.
        for r in rest:
            wait_for(lambda r=r: r.getStatus() == "connected", 10, "a node to connect")
        return nodes

    def close(self):
        for r in self.all:
            r.shutdown()
        for r in self.all:
            r.join()


@pytest.fixture
def nodes():
    ns = Nodes()
    yield ns
    ns.close()


@pytest.fixture
def pair(nodes):
    """Two connected runners."""
    return nodes.network(2)


@pytest.fixture
def hole():
    """A loopback UDP port that never answers: a node that knows it has searches that wait."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOP4, 0))
    yield s.getsockname()[1]
    s.close()
