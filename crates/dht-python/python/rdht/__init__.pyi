"""Type stubs of the package ``rdht``."""

from ._core import *  # noqa: F401,F403
from ._core import DhtRunner as _CoreRunner
from ._core import NodeSet

__version__: str
NodeSetInfo = NodeSet

class DhtRunner(_CoreRunner):
    """A DHT node on a thread of its own (joined at interpreter exit)."""
    def __init__(self) -> None: ...
