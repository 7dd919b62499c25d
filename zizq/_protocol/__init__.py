"""The protocol, I/O-free: what the clients and the worker send to Redis and
how they read the replies. Each module mirrors a part of the Redis layout
(docs/protocol/): calls, job records, enqueue, jobs, the lease, queries, cron,
and the loader of the Lua scripts. Nothing here opens a connection."""
