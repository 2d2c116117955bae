"""Exchange API: authenticated peg-out submission (``POST /pegouts``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from .node import FunctionaryNode


def mount_exchange_api(app: FastAPI, node: FunctionaryNode) -> None:
    """Add the exchange routes to ``app`` (being built in this session)."""
