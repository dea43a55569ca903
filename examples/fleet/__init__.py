"""The example fleet's handler sets, one module per service (wired by ``app:`` in services.yaml)."""
