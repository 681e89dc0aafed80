"""The API's endpoint names, as docs/protocol.md spells them, and their case-insensitive lookup."""

from __future__ import annotations

ENDPOINTS = (
    "GetToken",
    "validate",
    "GetMapList",
    "GetMapColumns",
    "GetMappedMapColumns",
    "GetAllData",
    "GetAllDataWithVariables",
    "runmap",
    "RunMapWithVariables",
    "runmapdatatable",
    "RunMapDataTableWithErrors",
    "runmapxml",
    "SaveProcessErrors",
)
"""Canonical endpoint names (IIS routes them case-insensitively)."""

_BY_LOWER = {name.lower(): name for name in ENDPOINTS}


def canonical(name: str) -> str | None:
    """The canonical spelling of endpoint ``name`` (any case), or None if unknown."""
    return _BY_LOWER.get(name.lower())
