"""Facts about this process that experiments and the bench report: peak memory.

A leaf module: it imports nothing from pyconvnet."""
from __future__ import annotations

import resource

__all__ = ["peak_rss_mib", "reset_peak_rss", "ru_maxrss_mib"]


def ru_maxrss_mib() -> float:
    """getrusage's ru_maxrss in MiB. On Linux it survives execve, so a process spawned by
    a large parent reports at least the parent's RSS at fork time: prefer peak_rss_mib."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def peak_rss_mib() -> float:
    """Peak resident set of this process image, MiB: VmHWM of /proc/self/status
    (ru_maxrss where /proc is not available)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return ru_maxrss_mib()


def reset_peak_rss() -> bool:
    """Resets VmHWM (Linux: 5 written to /proc/self/clear_refs) so the next peak is that of
    one phase; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
