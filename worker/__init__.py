"""tq.worker: the child process (fetch -> run -> ack/fail, one task at a time)."""

if __name__ != "tq.worker":
    raise ImportError(f"import tq.worker, not {__name__} (install the project: pip install -e .)")
