"""tq.store: the only code that talks to Redis — URLs, connections, cluster routing, key names,
the Lua scripts, and the typed operations built on them.

    urls.py        which deployment a URL names; redaction for logs
    link.py        the hot path's per-thread connection; what counts as an outage
    cluster.py     Redis Cluster: the client and slot routing of the hot path
    connection.py  which Redis to use (URL precedence), connect(), errors translated
    embedded.py    the embedded redis-server of the state folder
    keys.py        every key name
    scripts.py     the Lua scripts of lua/, loaded once and called by name
    broker.py      the queue operations of workers and masters (claim, ack, fail, requeue...)
    tasks.py       the producers' operations (enqueue, inspect, cancel, workflows, progress)
    admin.py       the operators' operations on queues (dead letters, purge, drop, limits...)
    views.py       what status pages read (depths, counters, limits, tasks by state)
    peek.py        tasks for status pages with their long values cut in Redis (previews)
    periodic.py    the periodic schedules' last and next ticks
    registry.py    live masters and workers
    history.py     the throughput and latency history
    upkeep.py      the master's maintenance: cancel requests, idle queues, hand-offs, promotion
    integrity.py   corrupt keys: diagnosis, quarantine, repair
    heads.py       the heads of the ready lists: the age of a queue's oldest ready task
"""
