"""The same-host write channel: payloads of a write session handed to the agent as sealed memfds.

When a mount and the fs agent share a kernel and a network namespace, a write payload need not
cross a TCP socket: the client fills a sealed memfd (:mod:`.shared_chunk`) and passes its fd over
the agent's abstract ``AF_UNIX`` socket (:mod:`.client`, :mod:`.server`); the agent splices it
into the session's file inside the kernel (:mod:`.sealed_payload`). Every request carries the
caller's token and is authorised like the ``session_write`` RPC. Anything else — another host,
another network namespace, an agent that cannot prove who it is — uses the RPC path.
"""
