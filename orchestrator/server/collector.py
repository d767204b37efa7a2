"""The cyclic garbage collector's settings for a serving process.

CPython's defaults (a young collection every 700 net allocations, a full one
whenever the long-lived heap has grown by a quarter) suit short scripts. A
server holding thousands of live sessions pays for them twice over: every
full collection walks every tracked object, the imported modules and the app
included, with the event loop stopped, and a connect storm allocates enough
to set off several. So, once the app is built: what exists then (modules,
routes, the app; never garbage) is frozen out of the collector's walks, and
the young generation is collected less often, so fewer short-lived objects
(a turn's dicts, tasks and frames) live long enough to be promoted and walked
again. Memory still returns: reference counting frees almost everything, and
the collector still runs, only less often.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # CPython's default is 700
MIDDLE_THRESHOLD = 20  # collections of the younger generation; the default is 10
OLD_THRESHOLD = 20


def tune_for_serving() -> None:
    """Freeze what start-up built and space out collections (once per process)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
