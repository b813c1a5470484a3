"""tq.dashboard: the web dashboard (`tq dashboard`)."""

if __name__ != "tq.dashboard":
    raise ImportError(f"import tq.dashboard, not {__name__} (install it: pip install -e .)")
