"""How much memory this process may still use, and sizes in words: for the checks that refuse, up
front and in one line, a model (nncli.models) or a data file (nncli.data) that would not fit."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smaller of MemAvailable and the cgroup's limit less its usage."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    ):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge v1 number: no limit
            candidates.append(max(int(limit) - usage, 0))
        break
    override = os.environ.get("NNCLI_MEMORY_LIMIT")  # bytes; lets tests and users pretend a smaller machine
    if override and override.isdigit():
        candidates.append(int(override))
    return min(candidates) if candidates else None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
