"""The authenticated peer transport over real sockets on 127.0.0.1.

Every wait is on a condition with a deadline (``until``); nothing sleeps to
synchronise. Hostile clients are built from the module's own handshake
pieces, so each attack changes exactly one thing about an honest exchange.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from functionary.errors import (
    DecryptionFailed,
    FrameOutOfOrder,
    FrameTooLarge,
    MalformedFrame,
    MalformedHandshake,
    ReplayedFrame,
    UnknownPeer,
)
from functionary.transport import (
    KIND_DATA,
    KIND_PING,
    PROTOCOL_TAG,
    Finish,
    Hello,
    PeerInfo,
    PeerNetwork,
    Reply,
    SecureChannel,
    federation_tag,
    initiate,
    read_frame,
    transcript_hash,
)

FED_ID = b"test-federation"


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


_PLAIN = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def kv_line(r: logging.LogRecord) -> str:
    """A record as the runtime's key=value formatter prints it: the event
    name in the message, its fields in ``extra``."""
    fields = {k: v for k, v in r.__dict__.items() if k not in _PLAIN}
    assert fields.get("event") == r.getMessage(), "the message is the event name"
    return " ".join(f"{k}={v}" for k, v in fields.items())


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [kv_line(r) for r in self.records]

    def rejected(self, reason: str) -> list[str]:
        return [m for m in self.lines() if "event=rejected" in m and f"reason={reason} " in m + " "]


class Fed:
    """N identities, N listening sockets, and the PeerNetworks we start."""

    def __init__(self, n: int, **net_kw: Any) -> None:
        self.keys = [SigningKey.generate() for _ in range(n)]
        self.socks: list[socket.socket] = []
        for _ in range(n):
            s = socket.socket()
            # As asyncio does for its own listeners: a restarted member can
            # bind its port again while old connections sit in TIME_WAIT.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            self.socks.append(s)
        self.infos = {
            i: PeerInfo(i, bytes(k.verify_key), "127.0.0.1", s.getsockname()[1])
            for i, (k, s) in enumerate(zip(self.keys, self.socks))
        }
        self.net_kw = net_kw
        self.nets: dict[int, PeerNetwork] = {}
        self.inbox: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self.logs: dict[int, Records] = {}

    def make(
        self,
        i: int,
        *,
        listen: tuple[str, int] | None = None,
        handler: Callable[[int, bytes], Awaitable[None] | None] | None = None,
        peers: dict[int, PeerInfo] | None = None,
        **kw: Any,
    ) -> PeerNetwork:
        log = logging.getLogger(f"test.transport.{id(self)}.{i}.{len(self.logs)}")
        log.setLevel(logging.DEBUG)
        rec = self.logs.setdefault(i, Records())
        log.addHandler(rec)
        inbox = self.inbox[i]

        def deliver(peer: int, data: bytes) -> None:
            inbox.append((peer, data))

        net = PeerNetwork(
            i,
            self.keys[i],
            peers if peers is not None else self.infos,
            listen if listen is not None else self.socks[i],
            handler or deliver,
            FED_ID,
            log,
            **{**self.net_kw, **kw},
        )
        self.nets[i] = net
        return net

    async def start(self, members: list[int] | None = None, **kw: Any) -> None:
        for i in members if members is not None else range(len(self.keys)):
            await self.make(i, **kw).start()

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nets.values()))
        for s in self.socks:
            s.close()

    def fully_connected(self, members: list[int]) -> bool:
        return all(self.nets[i].connected_peers() >= set(members) - {i} for i in members)

    def port(self, i: int) -> int:
        return self.infos[i].port


def no_pending_tasks() -> bool:
    return not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def assert_clean_logs(fed: Fed) -> None:
    secrets = [bytes(k).hex() for k in fed.keys]
    for rec in fed.logs.values():
        for r, msg in zip(rec.records, rec.lines()):
            assert r.exc_info is None, msg
            assert "Traceback" not in msg
            assert not any(s in msg for s in secrets), "private key material in a log line"


# --- encodings ---------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
b32 = st.binary(min_size=32, max_size=32)
ts = st.integers(0, 2**64 - 1)
sig = st.binary(min_size=64, max_size=64)


@given(b32, u16, u16, b32, ts, sig)
def test_handshake_messages_round_trip(fed: bytes, i: int, r: int, e: bytes, t: int, s: bytes) -> None:
    hello = Hello(fed, i, r, e, t)
    reply = Reply(fed, i, r, e, t, s)
    finish = Finish(s)
    for msg in (hello, reply, finish):
        data = msg.encode()
        assert len(data) == type(msg).SIZE
        assert data[:8] == PROTOCOL_TAG
        assert type(msg).decode(data) == msg
        with pytest.raises(MalformedHandshake):
            type(msg).decode(data[:-1])
        with pytest.raises(MalformedHandshake):
            type(msg).decode(data + b"\x00")
    # A message never decodes as another kind, even when the sizes are forced to agree.
    with pytest.raises(MalformedHandshake):
        Reply.decode(hello.encode() + b"\x00" * 64)
    with pytest.raises(MalformedHandshake):
        Hello.decode(PROTOCOL_TAG[:7] + b"X" + hello.encode()[8:])


@given(st.binary(max_size=200))
def test_handshake_decoding_refuses_garbage_by_name(data: bytes) -> None:
    for cls in (Hello, Reply, Finish):
        try:
            msg = cls.decode(data)
        except MalformedHandshake:
            continue
        assert msg.encode() == data  # one encoding per message


@given(st.binary(max_size=300), st.integers(1, 5))
def test_channel_frames_round_trip_and_refuse_replay_reflection_tampering(payload: bytes, count: int) -> None:
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    a = SecureChannel(1, k1, k2, 1024)  # a sends with k1
    b = SecureChannel(0, k2, k1, 1024)
    frames = [a.seal(KIND_DATA, payload) for _ in range(count)]
    for f in frames:
        assert b.open(f[:12], f[12:]) == (KIND_DATA, payload)
        assert struct.unpack(">I", f[:4])[0] == len(f) - 4
    with pytest.raises(ReplayedFrame):
        b.open(frames[-1][:12], frames[-1][12:])
    future = a.seal(KIND_PING, b"")
    a.seal(KIND_DATA, b"x")
    skipped = a.seal(KIND_DATA, b"y")
    with pytest.raises(FrameOutOfOrder):
        b.open(skipped[:12], skipped[12:])
    # Reflected back to its author: the other direction's key does not open it.
    with pytest.raises(DecryptionFailed):
        SecureChannel(0, k1, k2, 1024).open(frames[0][:12], frames[0][12:])
    tampered = bytearray(future)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        b.open(bytes(tampered[:12]), bytes(tampered[12:]))
    assert b.open(future[:12], future[12:]) == (KIND_PING, b"")
    with pytest.raises(FrameTooLarge):
        a.seal(KIND_DATA, b"z" * 1025)


def test_unknown_kind_is_malformed() -> None:
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    a, b = SecureChannel(1, k1, k2, 64), SecureChannel(0, k2, k1, 64)
    f = a.seal(7, b"")
    with pytest.raises(MalformedFrame):
        b.open(f[:12], f[12:])


# --- a working federation ----------------------------------------------------------


@run_async
async def test_members_connect_and_exchange_messages_both_ways() -> None:
    n = 4
    fed = Fed(n)

    async def slow_handler(peer: int, data: bytes) -> None:
        await asyncio.sleep(0)
        fed.inbox[n - 1].append((peer, data))

    try:
        await fed.start(list(range(n - 1)))
        await fed.make(n - 1, handler=slow_handler).start()
        await until(lambda: fed.fully_connected(list(range(n))), "a full mesh")
        for i, net in fed.nets.items():
            net.broadcast(f"hello from {i}".encode())
            for j in range(n):
                if j != i:
                    net.send(j, f"{i}->{j}".encode())

        def all_delivered() -> bool:
            return all(len(fed.inbox[i]) == 2 * (n - 1) for i in range(n))

        await until(all_delivered, "every message delivered")
        for i in range(n):
            assert sorted(fed.inbox[i]) == sorted(
                [(j, f"hello from {j}".encode()) for j in range(n) if j != i]
                + [(j, f"{j}->{i}".encode()) for j in range(n) if j != i]
            )
            # Per-peer order is kept: the broadcast was queued before the direct send.
            for j in range(n):
                if j != i:
                    from_j = [d for p, d in fed.inbox[i] if p == j]
                    assert from_j == [f"hello from {j}".encode(), f"{j}->{i}".encode()]
        for i, net in fed.nets.items():
            st_ = net.stats()
            assert st_["handshakes_ok"] == n - 1
            assert st_["messages_received"] == 2 * (n - 1)
            assert not any(k.startswith("rejected.") for k in st_), st_
            # i dials exactly the members above it; the others dialled i
            dialled = [m for m in fed.logs[i].lines() if "event=connected" in m and "dir=out" in m]
            assert len(dialled) == n - 1 - i
        with pytest.raises(UnknownPeer):
            fed.nets[0].send(0, b"to myself")
        with pytest.raises(UnknownPeer):
            fed.nets[0].send(n, b"to nobody")
    finally:
        await fed.stop()
    assert no_pending_tasks()
    assert_clean_logs(fed)


@run_async
async def test_large_message_near_the_limit() -> None:
    fed = Fed(2)
    try:
        await fed.start()
        await until(lambda: fed.fully_connected([0, 1]), "connected")
        big = bytes(range(256)) * (fed.nets[0].max_frame_size // 256)
        assert len(big) == 8 * 1024 * 1024
        fed.nets[0].send(1, big)
        fed.nets[1].send(0, big[:-1])
        await until(lambda: len(fed.inbox[1]) == 1 and len(fed.inbox[0]) == 1, "the big messages")
        assert fed.inbox[1][0] == (0, big)
        assert fed.inbox[0][0] == (1, big[:-1])
        with pytest.raises(FrameTooLarge):
            fed.nets[0].send(1, big + b"!")
    finally:
        await fed.stop()
    assert no_pending_tasks()


@run_async
async def test_reconnects_after_a_member_restarts_and_flushes_its_queue() -> None:
    fed = Fed(3, queue_limit=8, backoff_base=0.05, backoff_cap=0.4)
    try:
        await fed.start()
        await until(lambda: fed.fully_connected([0, 1, 2]), "a full mesh")
        port1 = fed.port(1)
        await fed.nets[1].stop()
        fed.socks[1].close()
        await until(
            lambda: 1 not in fed.nets[0].connected_peers() and 1 not in fed.nets[2].connected_peers(),
            "0 and 2 to notice member 1 is gone",
        )
        # While 1 is down: the queue keeps only the newest queue_limit messages.
        for k in range(20):
            fed.nets[0].send(1, b"m%d" % k)
        assert fed.nets[0].queued(1) == 8
        assert fed.nets[0].stats()["queue_dropped"] == 12
        await until(lambda: fed.nets[0].stats().get("dial_failures", 0) >= 2, "0 to keep redialling 1")

        await fed.make(1, listen=("127.0.0.1", port1)).start()
        await until(lambda: fed.fully_connected([0, 1, 2]), "the mesh to heal")
        await until(lambda: len(fed.inbox[1]) == 8, "the queued messages")
        assert fed.inbox[1] == [(0, b"m%d" % k) for k in range(12, 20)]
        fed.nets[2].send(1, b"after")
        fed.nets[1].send(2, b"back")
        await until(lambda: (2, b"after") in fed.inbox[1] and (1, b"back") in fed.inbox[2], "fresh traffic")
    finally:
        await fed.stop()
    assert no_pending_tasks()
    assert_clean_logs(fed)


@run_async
async def test_keepalives_hold_a_quiet_session_open() -> None:
    fed = Fed(2, keepalive_interval=0.05, idle_timeout=0.3)
    try:
        await fed.start()
        await until(lambda: fed.fully_connected([0, 1]), "connected")
        await until(lambda: fed.nets[1].stats().get("frames_received", 0) >= 12, "a dozen keepalives")
        assert fed.nets[0].stats()["handshakes_ok"] == 1  # never dropped for idleness
        assert "disconnects" not in fed.nets[0].stats()
    finally:
        await fed.stop()


@run_async
async def test_clock_skew_beyond_the_window_is_refused_on_both_sides() -> None:
    fed = Fed(3, backoff_base=0.05, backoff_cap=0.2)
    fast = lambda: time.time() + 300  # noqa: E731
    try:
        # 0's HELLO is from the future for 1, which refuses it. 2 runs fast too
        # but with a lax window, so it answers 1; 1 then refuses 2's REPLY.
        await fed.make(0, clock=fast).start()
        await fed.make(1).start()
        await fed.make(2, clock=fast, handshake_window=1000).start()

        def refused(direction: str, peer: int) -> bool:
            lines = fed.logs[1].rejected("HandshakeOutOfWindow")
            return any(f"peer={peer} " in m and f"dir={direction}" in m for m in lines)

        await until(lambda: refused("in", 0), "1 to refuse 0's HELLO")
        await until(lambda: refused("out", 2), "1 to refuse 2's REPLY")
        await until(lambda: 2 in fed.nets[0].connected_peers(), "0 and 2, whose clocks agree")
        assert fed.nets[1].connected_peers() == set()
    finally:
        await fed.stop()
    assert_clean_logs(fed)


# --- hostile clients ---------------------------------------------------------------


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the other end closes; fails if it sends anything first."""
    async with asyncio.timeout(5):
        try:
            rest = await reader.read()
        except ConnectionResetError:
            return True
    assert rest == b"", rest
    return True


async def _handshake(f: Fed, me: int, target: int, key: SigningKey | None = None, **kw: Any) -> Any:
    reader, writer = await _open(f.port(target))
    try:
        channel = await initiate(
            reader,
            writer,
            me=me,
            identity=key or f.keys[me],
            peer=target,
            peer_key=f.keys[target].verify_key,
            fed=kw.pop("fed", federation_tag(FED_ID)),
            **kw,
        )
    except BaseException:
        writer.close()
        raise
    return reader, writer, channel


async def _forged_finish(
    fed: Fed, me: int, target: int, signer: SigningKey, role: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An honest HELLO as ``me``, then a FINISH over the right transcript
    signed by ``signer`` under ``role``."""
    reader, writer = await _open(fed.port(target))
    eph = PrivateKey.generate()
    tag = federation_tag(FED_ID)
    hello = Hello(tag, me, target, bytes(eph.public_key), int(time.time() * 1000))
    writer.write(struct.pack(">I", Hello.SIZE) + hello.encode())
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    reply = Reply.decode(await reader.readexactly(length))
    th = transcript_hash(
        tag,
        me,
        target,
        bytes(fed.keys[me].verify_key),
        bytes(fed.keys[target].verify_key),
        hello.ephemeral,
        reply.ephemeral,
        hello.timestamp_ms,
        reply.timestamp_ms,
    )
    writer.write(struct.pack(">I", Finish.SIZE) + Finish(signer.sign(role + th).signature).encode())
    return reader, writer


@run_async
async def test_each_bad_client_is_refused_by_name_while_honest_sessions_continue() -> None:
    # Member 0 is never started: the test plays it (and others) with the keys it holds.
    fed = Fed(4, handshake_timeout=0.5)
    honest = [1, 2, 3]
    try:
        await fed.start(honest)
        await until(lambda: fed.fully_connected(honest), "the honest mesh")
        target = 3
        rec = fed.logs[target]

        async def expect(reason: str, count: int = 1) -> None:
            await until(lambda: len(rec.rejected(reason)) >= count, f"a {reason} line")
            assert fed.nets[target].stats()[f"rejected.{reason}"] == count

        # 1. An identity not in the federation.
        with pytest.raises(asyncio.IncompleteReadError):
            await _handshake(fed, 9, target, key=SigningKey.generate())
        await expect("UnknownPeer")

        # 2. Claims member 0 but signs FINISH with another key; then with 0's
        # real key but the responder's role label (a reflected signature).
        for signer, role in ((SigningKey.generate(), b"LQFEDT01 initiator"), (fed.keys[0], b"LQFEDT01 responder")):
            reader, writer = await _forged_finish(fed, 0, target, signer, role)
            assert await _closed_by_peer(reader)
            writer.close()
        await expect("BadHandshakeSignature", 2)

        # 3. A HELLO from 1000 s ago.
        with pytest.raises(asyncio.IncompleteReadError):
            await _handshake(fed, 0, target, clock=lambda: time.time() - 1000)
        await expect("HandshakeOutOfWindow")

        # 4. Another federation.
        with pytest.raises(asyncio.IncompleteReadError):
            await _handshake(fed, 0, target, fed=federation_tag(b"another federation"))
        await expect("WrongFederation")

        # 5. A real member dialling downwards (3 → 1); only lower indices dial.
        reader, writer = await _open(fed.port(1))
        with pytest.raises(asyncio.IncompleteReadError):
            await initiate(
                reader,
                writer,
                me=3,
                identity=fed.keys[3],
                peer=1,
                peer_key=fed.keys[1].verify_key,
                fed=federation_tag(FED_ID),
            )
        writer.close()
        await until(lambda: len(fed.logs[1].rejected("UnexpectedDialer")) == 1, "1 to refuse 3's dial")

        # 6. Garbage instead of a HELLO, and a handshake prefix over the limit.
        reader, writer = await _open(fed.port(target))
        writer.write(struct.pack(">I", 85) + b"\x00" * 85)
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("MalformedHandshake")
        reader, writer = await _open(fed.port(target))
        writer.write(struct.pack(">I", 1 << 30))
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("FrameTooLarge")

        # 7. Connects and says nothing.
        reader, writer = await _open(fed.port(target))
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("HandshakeTimeout")

        # 8. A genuine session for member 0, then a replayed frame.
        reader, writer, ch = await _handshake(fed, 0, target)
        frame = ch.seal(KIND_DATA, b"once")
        writer.write(frame + frame)
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("ReplayedFrame")
        assert fed.inbox[target].count((0, b"once")) == 1

        # 9. A tampered ciphertext.
        reader, writer, ch = await _handshake(fed, 0, target)
        bad = bytearray(ch.seal(KIND_DATA, b"tamper with me"))
        bad[20] ^= 0x40
        writer.write(bytes(bad))
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("DecryptionFailed")
        assert (0, b"tamper with me") not in fed.inbox[target]

        # 10. A length prefix over the session limit: refused before any body is sent.
        reader, writer, ch = await _handshake(fed, 0, target)
        writer.write(struct.pack(">I", fed.nets[target].max_frame_size + 26))
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("FrameTooLarge", 2)

        # 11. A frame counter that skips ahead.
        reader, writer, ch = await _handshake(fed, 0, target)
        ch.seal(KIND_DATA, b"never sent")
        writer.write(ch.seal(KIND_DATA, b"skips"))
        assert await _closed_by_peer(reader)
        writer.close()
        await expect("FrameOutOfOrder")

        # The honest sessions never dropped and still carry traffic both ways.
        for i in honest:
            assert fed.nets[i].connected_peers() >= set(honest) - {i}
            assert fed.nets[i].stats()["handshakes_ok"] == 2 + (4 if i == target else 0)
        for i in honest:
            for j in honest:
                if i != j:
                    fed.nets[i].send(j, b"still here %d" % i)
        await until(
            lambda: all(sum(1 for _, d in fed.inbox[j] if d.startswith(b"still here")) == 2 for j in honest),
            "honest traffic after the attacks",
        )
        # The sessions for member 0 each ended once, with their reason recorded.
        assert fed.nets[target].stats()["disconnect.ReplayedFrame"] == 1
        assert fed.nets[target].stats()["disconnect.DecryptionFailed"] == 1
    finally:
        await fed.stop()
    assert no_pending_tasks()
    assert_clean_logs(fed)
    # One structured line per refusal: event, member, reason, then fields.
    line = fed.logs[3].rejected("ReplayedFrame")[0]
    assert line.startswith("event=rejected me=3 reason=ReplayedFrame peer=0 ")


@run_async
async def test_read_frame_checks_the_length_before_reading_the_body() -> None:
    reader = asyncio.StreamReader()
    ch = SecureChannel(0, b"\x01" * 32, b"\x02" * 32, 100)
    reader.feed_data(struct.pack(">I", 100 + 26))  # no body follows; must not wait for one
    with pytest.raises(FrameTooLarge):
        async with asyncio.timeout(1):
            await read_frame(reader, ch)
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", 5) + b"\x00" * 5)
    with pytest.raises(MalformedFrame):
        await read_frame(reader, ch)
    # A body that stops arriving times out (the caller turns that into PeerIdle).
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", 60) + b"\x00" * 10)
    with pytest.raises(TimeoutError):
        await read_frame(reader, ch, idle_timeout=0.05)


@run_async
async def test_unauthenticated_sockets_are_capped() -> None:
    fed = Fed(2, max_pending_handshakes=2, handshake_timeout=30)
    try:
        await fed.start([1])
        silent = [await _open(fed.port(1)) for _ in range(2)]
        await until(lambda: fed.nets[1]._pending_handshakes == 2, "two pending handshakes")
        reader, writer = await _open(fed.port(1))
        assert await _closed_by_peer(reader)  # the third is turned away at once
        writer.close()
        assert fed.nets[1].stats()["inbound_refused_busy"] == 1
        for _, w in silent:
            w.close()
        await until(lambda: fed.nets[1]._pending_handshakes == 0, "the silent ones to go")
        await fed.start([0])
        await until(lambda: fed.fully_connected([0, 1]), "an honest member still gets in")
    finally:
        await fed.stop()
    assert no_pending_tasks()
