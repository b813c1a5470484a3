"""Exit codes the master and its children reserve, so a crash loop can be told from a crash."""

from __future__ import annotations

OK = 0
FAILURE = 1
USAGE = 2            # click's own code for bad options; tq's for bad values too
TIMED_OUT = 124      # `tq wait --timeout` ran out (the code of coreutils' timeout)
CHILD_BOOT_ERROR = 3   # a child could not set itself up (Redis unreachable at start, bad config)
CHILD_APP_ERROR = 4    # a child could not import the handler modules
MASTER_BOOT_ERROR = 5  # the first generation of children never came up

DESCRIPTIONS = {
    CHILD_BOOT_ERROR: "boot error",
    CHILD_APP_ERROR: "handler modules failed to import",
    MASTER_BOOT_ERROR: "children could not start",
}
