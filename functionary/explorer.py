"""The explorer page served at ``/``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from .node import FunctionaryNode


def mount_explorer(app: FastAPI, node: FunctionaryNode) -> None:
    """Add the explorer routes to ``app`` (being built in this session)."""
