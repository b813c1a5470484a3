"""tq.supervisor: the master process (forks, watches and replaces the workers; never runs tasks)."""

if __name__ != "tq.supervisor":
    raise ImportError(f"import tq.supervisor, not {__name__} (install it: pip install -e .)")
