"""The storage engine: the key schema, one Lua script per state transition, the protocol as data, the envelope
codec, and the broker, the only code that talks to Redis (see docs/architecture.md)."""
