"""`python -m tq.dashboard`: the dashboard without the tq CLI (Redis from TQ_REDIS_URL)."""

from __future__ import annotations

from .cli import dashboard

if __name__ == "__main__":
    dashboard(prog_name="python -m tq.dashboard")
