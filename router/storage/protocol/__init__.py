"""The Redis protocol of router as pure data: which script, which keys, which arguments, and how to read replies.

Sync and asyncio brokers both execute the :class:`Call` values built here, so the two clients share one
implementation of every state transition. Nothing in this package performs I/O. One module per concern:
:mod:`.scripts` (scripts, calls, the wire), :mod:`.delivery` (enqueue, lease, settle), :mod:`.upkeep` (maintenance
and integrity), :mod:`.lifecycle` (lookup, cancel, aggregation), :mod:`.cron` and :mod:`.admin` (the Inspector's
actions and views); callers use them through this package, as ``protocol.<name>``.
"""

from router.storage.protocol.admin import *  # noqa: F403
from router.storage.protocol.cron import *  # noqa: F403
from router.storage.protocol.delivery import *  # noqa: F403
from router.storage.protocol.lifecycle import *  # noqa: F403
from router.storage.protocol.scripts import *  # noqa: F403
from router.storage.protocol.upkeep import *  # noqa: F403
