"""A periodic task every second (tests/processes/test_periodic.py); each run recorded on the Redis
under test with its tick."""

from __future__ import annotations

import os

import redis

import tq

tq.periodic(1, "beat", {"from": "cronapp"})


@tq.handler("beat")
def beat(payload, ctx):
    r = redis.Redis.from_url(os.environ["TQ_REDIS_URL"], protocol=2)
    r.rpush("cron:beats", ctx.task_id)
    r.close()
