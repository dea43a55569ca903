"""One module per contender: the task, its handler, a producer factory and (where needed) a worker entry.

Each module reads the Redis URL from ``BENCH_REDIS_URL`` at import, because the peers' worker CLIs import
the app module by name and give no other way to pass it. See :mod:`benchmarks.peers.base` for the contract.
"""
