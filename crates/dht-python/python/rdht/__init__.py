"""rdht: OpenDHT's Python API on a Rust DHT node.

A script written for OpenDHT runs after changing ``import opendht as dht`` to
``import rdht as dht``. Crypto names (``Identity``, ``PrivateKey``, ``PublicKey``,
``Certificate``, ``TrustList``) keep upstream's API with ed25519/x25519 keys instead of RSA and
X.509; ``aesEncrypt``/``aesDecrypt`` use PBKDF2 + ChaCha20-Poly1305 (not OpenDHT's format). ``rdht.aio`` has the asyncio forms.
"""

import atexit as _atexit
import weakref as _weakref

from . import _core
from ._core import *  # noqa: F401,F403
from ._core import DhtRunner as _CoreRunner
from ._core import NodeSet

__version__ = _core.version()

#: Upstream has no ``NodeSetInfo``; some scripts import the name. It is ``NodeSet``.
NodeSetInfo = NodeSet

_runners: "_weakref.WeakSet[_CoreRunner]" = _weakref.WeakSet()


class DhtRunner(_CoreRunner):
    """OpenDHT's ``DhtRunner``: a DHT node on a runner thread (the one the runners of this
    process share, or its own with ``DhtConfig.setSharedThread(False)``).

    ``run()`` starts it; ``get``, ``put``, ``listen`` and the rest use it; ``shutdown()`` then
    ``join()`` stop it, and it can ``run()`` again. Runners still running when the interpreter
    exits are joined first (so no callback runs during interpreter teardown).
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        _runners.add(self)


@_atexit.register
def _join_all() -> None:
    for r in list(_runners):
        try:
            r.join()
        except Exception:  # pragma: no cover - best effort at exit
            pass


__all__ = sorted(
    [n for n in dir(_core) if not n.startswith("_")] + ["NodeSetInfo", "DhtRunner", "__version__"]
)
__all__ = list(dict.fromkeys(__all__))
