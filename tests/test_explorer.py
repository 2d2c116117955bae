"""The explorer page at ``/`` (functionary/explorer.py).

* In process: ``/`` and its assets are served with their content types, cache
  headers and ETags; anything else under ``/explorer/`` is the API's JSON 404.
* In headless Chromium (tests/browser.py) against real member processes: a
  2-of-3 federation with a peg on the embedded regtest mainchain
  (tests/federation.py, regtest/testing.py), one per module. The page shows
  the blocks with the members that signed each, as ``/block/:hash/signatures``
  says; it follows the chain and the mainchain without a reload (two
  screenshots differ where the block list is); it says "peg not running" for
  a 503; data it renders stays text; a member that goes away shows as
  "disconnected" and the page recovers when it returns.

Every wait polls a condition against a deadline. Screenshots are written
under the test's tmp dir, whose path is printed (pytest shows it on failure).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from functionary.api import create_app
from functionary.bitcoind import BitcoinRpc
from functionary.cli import PegOptions
from functionary.config import MainchainRpc
from regtest.testing import RegtestProcess
from tests.browser import Chromium, Page, chromium_or_skip, read_png
from tests.federation import ProcessFederation
from tests.test_runtime import Solo

# --- in process: what is served ---------------------------------------------------------


def _serve(tmp_path: Path, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        solo = Solo(tmp_path)
        await solo.start()
        try:
            app = create_app(solo.node)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://member") as c:
                await body(c)
        finally:
            await solo.node.stop()

    asyncio.run(main())


def _json_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    assert set(body) == {"code", "message"}, body
    return body


def test_page_and_assets_are_served_with_types_and_cache_headers(tmp_path: Path) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
        html = r.text
        assert html.startswith("<!doctype html>") and "@VERSION@" not in html

        again = await c.get("/", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = await c.head("/")
        assert head.status_code == 200 and head.headers["etag"] == r.headers["etag"]

        refs = [u for u in re.findall(r'(?:src|href)="([^"]+)"', html) if not u.startswith("data:")]
        assert sorted(u.split("?")[0] for u in refs) == ["explorer/explorer.css", "explorer/explorer.js"]
        versions = {u.partition("?v=")[2] for u in refs}
        assert len(versions) == 1 and re.fullmatch(r"[0-9a-f]{16}", versions.pop() or "")
        texts = {"/": html}
        for ref in refs:
            path = "/" + ref.partition("?")[0]
            kind = "text/javascript" if path.endswith(".js") else "text/css"
            pinned = await c.get("/" + ref)
            assert pinned.status_code == 200
            assert pinned.headers["content-type"] == f"{kind}; charset=utf-8"
            assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert pinned.headers["x-content-type-options"] == "nosniff"
            for unpinned in (path, path + "?v=0000000000000000"):
                plain = await c.get(unpinned)
                assert plain.status_code == 200 and plain.content == pinned.content
                assert plain.headers["cache-control"] == "no-cache"
            cached = await c.get("/" + ref, headers={"If-None-Match": f'W/"x", {pinned.headers["etag"]}'})
            assert cached.status_code == 304 and cached.content == b""
            assert cached.headers["etag"] == pinned.headers["etag"]
            texts[path] = pinned.text

        # Nothing from elsewhere: no absolute URL, no CSS import or url().
        for path, text in texts.items():
            assert not re.findall(r"https?://|@import|url\(", text), path
        # Data reaches the page as text only.
        js = texts["/explorer/explorer.js"]
        assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js

        for path in ("/explorer/nope.js", "/explorer/index.html", "/explorer/..%2Fexplorer.py", "/explorer/"):
            code = _json_error(await c.get(path), 404)["code"]
            assert code in ("AssetNotFound", "NotFound"), (path, code)
        _json_error(await c.post("/"), 405)

        # For people, not programs: not in the OpenAPI schema (the schemathesis run).
        paths = (await c.get("/openapi.json")).json()["paths"]
        assert "/" not in paths and not any(p.startswith("/explorer") for p in paths)

    _serve(tmp_path, body)


# --- in Chromium, against member processes ----------------------------------------------

NEWEST = "Number(document.querySelector('#blocks-body tr[data-height]')?.dataset.height ?? -1)"
CONN = "document.getElementById('conn')"
ROWS = """Array.from(document.querySelectorAll('#blocks-body tr[data-height]')).map(tr => ({
  height: Number(tr.dataset.height),
  hash: tr.dataset.hash,
  signed: Array.from(tr.querySelectorAll('.badge.signed')).map(b => Number(b.dataset.member)),
  missing: Array.from(tr.querySelectorAll('.badge.missing')).map(b => Number(b.dataset.member)),
  count: tr.querySelector('.count')?.textContent ?? null,
  text: tr.querySelector('.signers').textContent,
}))"""
MAINCHAIN_TIP = "document.querySelector('#peg-facts [data-field=mainchain_tip]')?.textContent"


@dataclass
class Net:
    fed: ProcessFederation
    rpc: BitcoinRpc
    http: httpx.Client

    @property
    def url(self) -> str:
        """Member 0's API, where the page is opened."""
        return self.fed.members[0].api + "/"

    def get(self, path: str) -> Any:
        r = self.http.get(self.url + path)
        r.raise_for_status()
        return r.json()

    def tip(self) -> int:
        return int(self.http.get(self.url + "blocks/tip/height").text)

    def mine(self, n: int = 1) -> None:
        self.rpc.generatetoaddress(n, self.rpc.getnewaddress())


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    binary = chromium_or_skip()  # before any process starts: a skip costs nothing
    browser = Chromium(binary, tmp_path_factory.mktemp("chromium"))
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def net(chromium: Chromium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("explorer")
    password = os.urandom(16).hex()
    password_file = base / "rpcpassword"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    (base / "mainchain").mkdir()
    chain = RegtestProcess(base / "mainchain" / "data", rpcuser="test", rpcpassword=password)
    chain.start()
    rpc = chain.rpc(timeout=30.0)
    fed: ProcessFederation | None = None
    http = httpx.Client(timeout=5.0)
    try:
        rpc.generatetoaddress(101, rpc.getnewaddress())
        fed = ProcessFederation(
            base / "fed",
            3,
            2,
            peg=PegOptions(csv_delay=144, pegin_min_depth=2),
            mainchain_rpc=MainchainRpc(url=chain.url, user="test", password_file=password_file, timeout=10.0),
        )
        fed.start_all()
        fed.wait_heights(2, timeout=60)
        yield Net(fed, rpc, http)
        problems = fed.check_invariants()
        assert not problems, "\n".join(problems) + "\n" + fed.describe()
    finally:
        if fed is not None:
            fed.close()
        http.close()
        rpc.close()
        chain.stop()


@pytest.fixture
def page(chromium: Chromium, net: Net) -> Iterator[Page]:
    p = chromium.new_page()
    try:
        yield p
    finally:
        p.close()


def open_explorer(page: Page, net: Net) -> None:
    page.goto(net.url)
    page.wait_for(f"{CONN}.dataset.state === 'live' && {NEWEST} > 0", 15, "the page to connect and list blocks")


def assert_well_behaved(page: Page, net: Net) -> None:
    """No uncaught exception on the page; nothing fetched from another origin."""
    assert not page.exceptions, page.exceptions
    origin = net.url.rstrip("/")
    foreign = [u for u in page.requests if not (u == origin or u.startswith(origin + "/") or u.startswith("data:"))]
    assert not foreign, f"the page fetched from elsewhere: {foreign}"


def test_blocks_appear_with_the_members_that_signed_them(page: Page, net: Net) -> None:
    open_explorer(page, net)
    tip = net.tip()
    page.wait_for(f"{NEWEST} >= {tip}", 15, f"the page to show the API's tip {tip}")
    rows = page.evaluate(ROWS)  # one snapshot: the page's script cannot run in between
    newest = rows[0]["height"]
    assert tip <= newest <= net.tip()
    assert [r["height"] for r in rows] == list(range(newest, newest - len(rows), -1))
    assert len(rows) == min(10, newest + 1)

    fed = net.get("federation")
    n, m = fed["n"], fed["threshold"]
    assert (n, m) == (3, 2)
    for row in rows:
        assert row["hash"] == net.http.get(net.url + f"block-height/{row['height']}").text
        if row["height"] == 0:
            assert row["text"] == "genesis: no signatures"
            continue
        sigs = net.get(f"block/{row['hash']}/signatures")
        assert sorted(row["signed"]) == sorted(s["index"] for s in sigs["signers"]), row
        assert sorted(row["signed"] + row["missing"]) == list(range(n)), row
        assert len(row["signed"]) >= m and row["count"] == f"{len(row['signed'])} of {n}", row

    # The federation: members, threshold and fault bounds as /federation has them.
    bounds = fed["fault_bounds"]
    summary = page.evaluate("document.getElementById('fed-summary').textContent")
    assert summary.startswith(f"{m}-of-{n}:"), summary
    offline = bounds["offline_tolerance"]
    assert f"up to {offline} member{'' if offline == 1 else 's'} offline" in summary, summary
    assert f"up to {bounds['equivocation_tolerance']} equivocating" in summary, summary
    members = page.evaluate(
        "Array.from(document.querySelectorAll('#members-body tr'))"
        ".map(tr => [Number(tr.dataset.member), tr.children[1].textContent])"
    )
    assert members == [[x["index"], x["name"]] for x in fed["members"]]
    page.wait_for(
        "Array.from(document.querySelectorAll('#members-body tr')).map(tr => tr.children[4].textContent).join()"
        " === 'this member,connected,connected'",
        15,
        "member 0 to be shown as this member, connected to the other two",
    )

    # The peg: its state, and the mainchain tip following the mainchain.
    page.wait_for("document.getElementById('peg-state').textContent === 'running; reserves balanced'", 10, "peg")
    peg = net.get("peg/status")
    shown = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('#peg-facts dt'))"
        ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))"
    )
    assert shown["pegged in"] == "0.00000000" == shown["sidechain supply"], shown
    assert peg["reserves"]["pegged_in"] == 0
    assert page.evaluate("document.querySelector('#pegouts-body').textContent") == "none pending"
    mc = net.rpc.getblockcount()
    page.wait_for(f"{MAINCHAIN_TIP} === '{mc}'", 15, f"mainchain tip {mc} on the page")
    net.mine()
    page.wait_for(f"{MAINCHAIN_TIP} === '{mc + 1}'", 15, f"mainchain tip {mc + 1} on the page")
    assert_well_behaved(page, net)


def test_the_page_updates_live_and_screenshots_show_the_blocks_change(page: Page, net: Net, tmp_path: Path) -> None:
    print(f"screenshots in {tmp_path}")
    open_explorer(page, net)
    page.evaluate("window.__sameDocument = 'yes'")
    first = page.evaluate(NEWEST)
    region = page.evaluate(
        """(() => {
          const rs = Array.from(document.querySelectorAll('#blocks-body td:nth-child(-n+2)'))
            .map(td => td.getBoundingClientRect());
          const title = document.querySelector('.top h1').getBoundingClientRect();
          return {
            blocks: [Math.min(...rs.map(r => r.left)), Math.min(...rs.map(r => r.top)),
                     Math.max(...rs.map(r => r.right)), Math.max(...rs.map(r => r.bottom))].map(Math.round),
            title: [title.left, title.top, title.right, title.bottom].map(Math.round),
          };
        })()"""
    )
    before_path, after_path = tmp_path / "explorer-before.png", tmp_path / "explorer-after.png"
    before_png = page.screenshot(before_path)

    page.wait_for(f"{NEWEST} >= {first + 2}", 20, f"the page to show height {first + 2} without a reload")
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    after_png = page.screenshot(after_path)

    before, after = read_png(before_png), read_png(after_png)
    for img, path in ((before, before_path), (after, after_path)):
        assert (img.width, img.height) == (1280, 1000), path
        assert img.colours() >= 8, f"{path} looks blank ({img.colours()} colours)"

    blocks, title = (tuple(region[k]) for k in ("blocks", "title"))
    assert blocks[2] - blocks[0] > 50 and blocks[3] - blocks[1] > 20, region
    assert before.crop(*blocks).rows != after.crop(*blocks).rows, (
        f"the block list looks the same in {before_path} and {after_path} though the page went from height "
        f"{first} to {page.evaluate(NEWEST)}"
    )
    assert after.crop(*blocks).colours(step=1) > 2, f"the block list is blank in {after_path}"
    # A part of the page that does not change is pixel-identical: the difference is the blocks'.
    assert before.crop(*title).rows == after.crop(*title).rows, f"the title differs in {before_path}, {after_path}"
    assert_well_behaved(page, net)


def test_peg_not_running_and_data_is_rendered_as_text(page: Page, net: Net) -> None:
    hostile = '<img src=x onerror="window.__pwned=1">member1'
    real_fed = net.get("federation")
    fake_fed = json.loads(json.dumps(real_fed))
    fake_fed["members"][1]["name"] = hostile
    pending_id = "ab" * 32 + ":1"
    real_peg = net.get("peg/status")
    peg_answer: dict[str, tuple[int, Any]] = {
        "now": (503, {"code": "PegNotRunning", "message": "this member runs no peg (no mainchain connection)"})
    }
    page.serve("*/federation", lambda url: (200, fake_fed))
    page.serve("*/peg/status", lambda url: peg_answer["now"])
    open_explorer(page, net)

    # 503: a state of the member, not a lost connection.
    page.wait_for("document.getElementById('peg-state').textContent === 'peg not running'", 10, "peg not running")
    assert page.evaluate(f"{CONN}.dataset.state") == "live"
    facts = page.evaluate("Array.from(document.querySelectorAll('#peg-facts dd')).map(dd => dd.textContent)")
    assert facts and set(facts) == {"—"}, facts
    assert page.evaluate("document.getElementById('reserves').hidden") is True

    tip = net.tip()
    fake_peg = {
        **real_peg,
        "pending_pegouts": 2,
        "pending": [
            {"id": pending_id, "amount": 50_000_000, "sidechain_height": tip - 1},
            {"id": "<script>window.__pwned=2</script>", "amount": 123_456_789, "sidechain_height": tip},
        ],
    }
    peg_answer["now"] = (200, fake_peg)
    page.wait_for("document.querySelectorAll('#pegouts-body tr[data-pegout]').length === 2", 10, "two peg-outs")
    pegouts = page.evaluate(
        "Array.from(document.querySelectorAll('#pegouts-body tr')).map(tr => ({"
        " id: tr.dataset.pegout, cells: Array.from(tr.children).map(td => td.textContent),"
        " href: tr.querySelector('a')?.getAttribute('href') ?? null,"
        " title: tr.children[0].firstChild?.getAttribute('title') ?? null }))"
    )
    assert [p["id"] for p in pegouts] == [pending_id, "<script>window.__pwned=2</script>"]
    assert pegouts[0]["href"] == f"pegouts/{pending_id}" and pegouts[1]["href"] is None
    assert [p["cells"][1] for p in pegouts] == ["0.50000000", "1.23456789"]
    assert [p["title"] for p in pegouts] == [pending_id, "<script>window.__pwned=2</script>"]
    assert pegouts[1]["cells"][0] == "<script>…/script>"  # shortened like a hash, in full in its title

    names = page.evaluate(
        "Array.from(document.querySelectorAll('#members-body tr')).map(tr => tr.children[1].textContent)"
    )
    assert names[1] == hostile
    badge_title = page.evaluate(
        "document.querySelector('#blocks-body .badge[data-member=\"1\"]').getAttribute('title')"
    )
    assert badge_title.startswith(hostile)
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("window.__pwned === undefined") is True
    assert_well_behaved(page, net)


def test_a_member_that_goes_away_shows_disconnected_and_the_page_recovers(page: Page, net: Net) -> None:
    # Last in the module: it restarts the member the other tests read.
    open_explorer(page, net)
    shown = page.evaluate(NEWEST)
    net.fed.kill(0)
    page.wait_for(f"{CONN}.dataset.state === 'disconnected'", 10, "the page to show it is disconnected")
    text = page.evaluate(f"{CONN}.textContent.replace(/\\s+/g, ' ').trim()")
    assert re.fullmatch(r"disconnected · retrying (in \d+ s|now)", text), text
    # The last data stays on the page, marked stale; nothing broke.
    assert page.evaluate("document.getElementById('main').classList.contains('stale')") is True
    assert page.evaluate(NEWEST) >= shown

    net.fed.start(0)
    top = max(h for h in net.fed.heights().values() if h is not None)
    page.wait_for(
        f"{CONN}.dataset.state === 'live' && {NEWEST} > {top}", 40, f"the page to be live again past height {top}"
    )
    assert page.evaluate("document.getElementById('main').classList.contains('stale')") is False
    assert_well_behaved(page, net)
