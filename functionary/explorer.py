"""The explorer page served at ``/``: the latest blocks and which members
signed each, the federation, the peg's reserves and its pending peg-outs,
updating live.

The page is static HTML, CSS and JavaScript (``functionary/explorer/``) that
polls this member's own read API, so it shows nothing the JSON paths do not and
needs no state here. Nothing is fetched from anywhere else: no CDN, no fonts,
and a Content-Security-Policy that lets the browser load only from this origin.

    path                          type                         Cache-Control
    GET /                         text/html; charset=utf-8     no-cache (revalidate by ETag)
    GET /explorer/explorer.js     text/javascript; ...         immutable, a year, when ?v= names
    GET /explorer/explorer.css    text/css; ...                this build's assets; else no-cache

The page names its assets with ``?v=`` set to a digest of their contents, so a
browser keeps them until the member runs different ones. Every response has an
ETag and answers ``If-None-Match`` with 304. An unknown asset is the API's JSON
error (404 ``AssetNotFound``). None of these paths is in the OpenAPI schema:
they are for people, not programs.

What the page asks for, every ~1.5 s (backing off to 5 s while the member does
not answer, with a visible "disconnected" state):

    /status                       tip, this member's index, connected peers
    /blocks                       when the tip changed: the 10 newest blocks
    /block/:hash/signatures       once per block hash not seen before
    /peg/status                   reserves, pending peg-outs (503: "peg not running")
    /federation                   at start, then every 30 s
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .api_errors import ApiError

if TYPE_CHECKING:
    from .node import FunctionaryNode

PAGE = "index.html"
ASSETS = ("explorer.js", "explorer.css")
VERSION_MARK = b"@VERSION@"
"""Replaced in the page by the assets' digest (their ``?v=``)."""

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
PAGE_HEADERS = {
    # Only this origin: the page's own script and style, JSON from the API.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def response(self, request: Request, cache_control: str, headers: dict[str, str] | None = None) -> Response:
        h = {"Cache-Control": cache_control, "ETag": self.etag, "X-Content-Type-Options": "nosniff", **(headers or {})}
        if _matches(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=h)
        return Response(self.body, media_type=self.media_type, headers=h)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@dataclass(frozen=True)
class ExplorerSite:
    page: Asset
    assets: dict[str, Asset]
    version: str
    """Digest of every asset; the page asks for each as ``name?v=version``."""

    @classmethod
    def load(cls) -> ExplorerSite:
        root = resources.files(__package__ or "functionary").joinpath("explorer")
        assets = {name: Asset(root.joinpath(name).read_bytes(), _media_type(name)) for name in ASSETS}
        digest = hashlib.sha256()
        for name in ASSETS:
            digest.update(name.encode() + b"\0" + hashlib.sha256(assets[name].body).digest())
        version = digest.hexdigest()[:16]
        page = root.joinpath(PAGE).read_bytes().replace(VERSION_MARK, version.encode())
        return cls(Asset(page, _media_type(PAGE)), assets, version)


def _media_type(name: str) -> str:
    return MEDIA_TYPES["." + name.rsplit(".", 1)[-1]]


def mount_explorer(app: FastAPI, node: FunctionaryNode) -> None:
    """Add ``/`` and ``/explorer/:asset`` to ``app``. The page reads the node
    through the JSON API only, so ``node`` is not used here."""
    del node
    site = ExplorerSite.load()

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def explorer_page(request: Request) -> Response:
        return site.page.response(request, REVALIDATE, PAGE_HEADERS)

    @app.api_route("/explorer/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def explorer_asset(request: Request, name: str, v: str = "") -> Response:
        asset = site.assets.get(name)
        if asset is None:
            raise ApiError(404, "AssetNotFound", "no such explorer asset")
        return asset.response(request, IMMUTABLE if v == site.version else REVALIDATE)
