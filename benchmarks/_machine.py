"""What the benchmarks ran on: CPU, cores, memory, Python and library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import psutil  # type: ignore[import-untyped]  # no stubs installed

PACKAGES = (
    "smartconnect-async",
    "aiohttp",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "attrs",
    "defusedxml",
    "uvicorn",
    "starlette",
    "matplotlib",
    "psutil",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict[str, str]:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} physical",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "event loop": "asyncio (default policy)",
        "libraries": ", ".join(versions),
        "load average at start (1, 5, 15 min)": load,
    }
