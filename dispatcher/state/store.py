"""The one door to Redis, split by job: layout.py lays out the keys and arguments every script
reads first, writes.py makes each change of live state one atomic Lua step, reads.py answers the
API and the live page. A Store is all three over one client and one routing in hand."""

from __future__ import annotations

from dispatcher.state.reads import Reads
from dispatcher.state.writes import Writes


class Store(Writes, Reads):
    pass
