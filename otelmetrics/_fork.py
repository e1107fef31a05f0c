"""Re-initialising objects in a forked child."""
from __future__ import annotations

import os
import weakref


def call_in_child_after_fork(obj, method_name: str) -> None:
    """Call ``obj.<method_name>()`` in every child forked from now on, as long as
    ``obj`` is alive (held weakly: the hook does not keep it)."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(obj)

    def after_fork_in_child() -> None:
        target = ref()
        if target is not None:
            getattr(target, method_name)()

    os.register_at_fork(after_in_child=after_fork_in_child)
