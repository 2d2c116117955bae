"""Headless Chromium for tests, driven over the DevTools protocol (CDP).

``Chromium(binary, dir)`` starts Debian's ``chromium`` headless with its own
profile in ``dir`` and a DevTools port on 127.0.0.1; ``new_page()`` opens a
tab and returns a ``Page`` speaking CDP over its WebSocket. There is no
sleeping anywhere: every wait polls a condition against a deadline.

    Page verb                 what it does
    goto(url)                 navigate and wait until the document has loaded
    evaluate(js)              a JS expression's value (JSON), promises awaited
    wait_for(js, t, what)     poll ``js`` until truthy; else fail with its last value
    screenshot(path)          the viewport as PNG, saved to ``path``
    serve(pattern, respond)   answer matching requests from Python (``Fetch``)
    exceptions, requests      uncaught page exceptions; every URL the page asked for

``read_png`` decodes a PNG (8-bit RGB/RGBA, what Chromium writes) with zlib
alone, so the tests need no imaging library.

Finding the browser: ``$CHROMIUM`` if set, else ``chromium`` or
``chromium-browser`` on PATH. ``scripts/ensure-chromium.sh`` installs Debian's
package where it can (root with apt-get); ``chromium_or_skip()`` runs it when
the browser is missing and skips only where it could not have been installed.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
ENSURE_SCRIPT = ROOT / "scripts" / "ensure-chromium.sh"
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []

VIEWPORT = (1280, 1000)
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks one and writes it to DevToolsActivePort
]


# --- finding the browser ------------------------------------------------------------------


def find_chromium() -> str | None:
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def can_install_chromium() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def chromium_or_skip() -> str:
    """The browser's path. Runs scripts/ensure-chromium.sh when it is missing;
    skips when it cannot be had here, fails when it could have been (as root
    with apt-get, as in CI), so CI never skips the browser tests silently."""
    found = find_chromium()
    if found is None and not os.environ.get("CHROMIUM"):
        subprocess.run([str(ENSURE_SCRIPT)], check=False, timeout=900)
        found = find_chromium()
    if found is not None:
        return found
    if os.environ.get("CHROMIUM"):
        pytest.fail(f"CHROMIUM={os.environ['CHROMIUM']} is not an executable")
    if can_install_chromium():
        pytest.fail(f"chromium is missing although it could be installed here (root, apt-get): see {ENSURE_SCRIPT}")
    pytest.skip(
        "chromium is not installed and cannot be installed here (needs root and apt-get); "
        "install Debian's chromium or set CHROMIUM=/path/to/chromium"
    )


# --- the DevTools protocol ----------------------------------------------------------------


class CdpError(AssertionError):
    """A CDP command answered with an error, or a page expression threw."""


class Page:
    """One tab, over its own DevTools WebSocket."""

    def __init__(self, browser: Chromium, target_id: str, ws_url: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(ws_url, max_size=None, open_timeout=10, compression=None)
        )
        self._ids = itertools.count(1)
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._routes: list[tuple[str, Callable[[str], tuple[int, Any] | None]]] = []
        self.exceptions: list[str] = []
        self.requests: list[str] = []
        self.on("Runtime.exceptionThrown", self._on_exception)
        self.on("Network.requestWillBeSent", lambda p: self.requests.append(p["request"]["url"]))
        self.on("Fetch.requestPaused", self._on_paused)
        self.call("Runtime.enable")
        self.call("Network.enable")
        self.call("Page.enable")
        w, h = VIEWPORT
        self.call("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)

    # -- transport --

    def on(self, event: str, handler: Callable[[dict[str, Any]], None]) -> None:
        self._handlers[event] = handler

    def send(self, method: str, **params: Any) -> int:
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        return i

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        i = self.send(method, **params)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._receive(deadline - time.monotonic())
            if msg is None:
                raise CdpError(f"{method}: no answer within {timeout} s")
            if msg.get("id") == i:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    def pump(self, seconds: float) -> None:
        """Handle events for ``seconds`` (the poll interval of ``wait_for``)."""
        deadline = time.monotonic() + seconds
        while self._receive(deadline - time.monotonic()) is not None:
            pass

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        if timeout <= 0:
            return None
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        msg: dict[str, Any] = json.loads(raw)
        handler = self._handlers.get(msg.get("method", ""))
        if handler is not None:
            handler(msg.get("params", {}))
        return msg

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{self.browser.http}/json/close/{self.target_id}", timeout=5)

    # -- page verbs --

    def evaluate(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError(f"{expression!r} threw: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
            self.pump(interval)

    def goto(self, url: str, timeout: float = 15.0) -> None:
        r = self.call("Page.navigate", url=url)
        if r.get("errorText"):
            raise CdpError(f"navigating to {url}: {r['errorText']}")
        self.wait_for(
            f"document.readyState === 'complete' && location.href === {json.dumps(url)}", timeout, f"{url} to load"
        )

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def serve(self, url_pattern: str, respond: Callable[[str], tuple[int, Any] | None]) -> None:
        """Answer requests whose URL matches ``url_pattern`` (CDP wildcards)
        with ``respond(url) -> (status, json_body)``; None lets one through."""
        self._routes.append((url_pattern, respond))
        self.call("Fetch.enable", patterns=[{"urlPattern": p, "requestStage": "Request"} for p, _ in self._routes])

    def _on_paused(self, params: dict[str, Any]) -> None:
        url = params["request"]["url"]
        for pattern, respond in self._routes:
            if fnmatch.fnmatchcase(url, pattern):
                answer = respond(url)
                if answer is not None:
                    status, body = answer
                    self.send(
                        "Fetch.fulfillRequest",
                        requestId=params["requestId"],
                        responseCode=status,
                        responseHeaders=[{"name": "Content-Type", "value": "application/json"}],
                        body=base64.b64encode(json.dumps(body).encode()).decode(),
                    )
                    return
        self.send("Fetch.continueRequest", requestId=params["requestId"])

    def _on_exception(self, params: dict[str, Any]) -> None:
        d = params.get("exceptionDetails", {})
        self.exceptions.append(str(d.get("exception", {}).get("description") or d.get("text")))


class Chromium:
    """A headless Chromium process with a throwaway profile in ``dir``."""

    def __init__(self, binary: str, dir: Path, timeout: float = 30.0) -> None:
        self.dir = dir
        self.profile = dir / "profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log_path = dir / "chromium.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*_DIE_WITH_PARENT, binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) >= 2:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium opened no DevTools port in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)  # polling a file Chromium writes; no event to wait on
        self.http = f"http://127.0.0.1:{int(lines[0])}"

    def new_page(self) -> Page:
        r = httpx.put(f"{self.http}/json/new?about:blank", timeout=10)
        r.raise_for_status()
        target = r.json()
        return Page(self, target["id"], target["webSocketDebuggerUrl"])

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """SIGTERM, then SIGKILL to the process group this started (its renderers)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


# --- PNG ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]
    """One ``bytes`` of ``width * channels`` per row, filters undone."""

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> Image:
        """The part from (x0, y0) up to, not including, (x1, y1), clamped to the image."""
        c = self.channels
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = max(x0, min(self.width, x1)), max(y0, min(self.height, y1))
        return Image(x1 - x0, y1 - y0, c, [row[x0 * c : x1 * c] for row in self.rows[y0:y1]])

    def colours(self, step: int = 4) -> int:
        """Distinct pixel values on a grid of every ``step``-th pixel."""
        seen = set()
        for row in self.rows[::step]:
            for x in range(0, self.width, step):
                seen.add(row[x * self.channels : (x + 1) * self.channels])
        return len(seen)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG, checking every chunk's CRC."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: bad signature")
    pos = len(PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    idat = bytearray()
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r}: truncated or bad CRC")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError("PNG image data has the wrong size")
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(f, line, prev, channels)
        rows.append(bytes(line))
        prev = line
    return Image(width, height, channels, rows)


def _unfilter(f: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    n = len(line)
    if f == 0:
        return
    if f == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif f == 2:
        for i in range(n):
            line[i] = (line[i] + prev[i]) & 0xFF
    elif f == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif f == 4:
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            line[i] = (line[i] + pred) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter type {f}")
