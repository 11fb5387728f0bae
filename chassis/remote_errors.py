"""Business errors travel over RPC as themselves: registered with nameko's deserializer, a caller (the
gateway, the CLI, another service) gets the same exception with its field errors, not a RemoteError.
Imported by every process that makes RPC calls."""

from __future__ import annotations

from nameko.exceptions import deserialize_to_instance

from chassis.errors import EXPECTED

for _error in EXPECTED:
    deserialize_to_instance(_error)
