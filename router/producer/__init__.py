"""The producer side: the enqueue-time guard, the sync and asyncio clients, and the optional live guard."""
