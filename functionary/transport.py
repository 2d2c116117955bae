"""The authenticated, encrypted TCP network between federation members.

Every member has an Ed25519 identity key, listed with its index and address in
the federation's public file. A connection becomes a *session* after a
three-message handshake that binds a fresh X25519 agreement to both identity
keys; after that every frame is sealed with ChaCha20-Poly1305 (IETF) under a
per-direction key, with an explicit, strictly increasing counter as nonce.
This module moves opaque bytes: it knows nothing of consensus messages.

Who dials
---------
Member ``i`` dials member ``j`` only when ``i < j``; a member accepts inbound
sessions only from lower indices (anything else is ``UnexpectedDialer``). So
each pair has exactly one connection and no tie-breaking is needed. A new
session from a peer replaces an old one (the peer restarted; the old socket
may be half-open). The dialer reconnects with capped exponential backoff and
jitter (``backoff_base`` → ``backoff_cap``, 0.1 s → 5 s by default).

Handshake (initiator I dials responder R)
-----------------------------------------
Each message travels in a plaintext length-prefixed frame
(``u32 length | message``) limited to ``HANDSHAKE_LIMIT`` bytes, so an
unauthenticated socket cannot make us allocate more. Integers are big-endian.

=============  ======  =================================================
message        bytes   fields
=============  ======  =================================================
HELLO  I→R     85      tag[8] kind=1[1] fed[32] i[u16] r[u16] eI[32] tI[u64]
REPLY  R→I     149     tag[8] kind=2[1] fed[32] i[u16] r[u16] eR[32] tR[u64] sigR[64]
FINISH I→R     73      tag[8] kind=3[1] sigI[64]
=============  ======  =================================================

``tag`` is ``PROTOCOL_TAG``; ``fed`` is a 32-byte BLAKE2b digest of the
federation id; ``eI``/``eR`` are ephemeral X25519 public keys; ``tI``/``tR``
are Unix times in milliseconds that must lie within ``handshake_window``
(±120 s) of the receiver's clock. Both signatures are over the same
transcript hash, each with its own role label::

    th   = BLAKE2b-256(person="lqfed-th", tag | fed | i | r | idpk_i | idpk_r | eI | eR | tI | tR)
    sigR = Ed25519_r("LQFEDT01 responder" | th)
    sigI = Ed25519_i("LQFEDT01 initiator" | th)

Why this resists replay and reflection: each side's signature covers the
*other* side's fresh ephemeral key, so a recorded REPLY or FINISH is useless
in any other session; the role labels and the ordered indices stop a
signature from being reflected back to its author; the timestamps bound how
long an unanswered HELLO stays meaningful. The session keys are::

    s    = X25519(e_own, e_peer)           (all-zero → MalformedHandshake)
    k_IR = BLAKE2b-256(key=s, person="lqfed-key-i2r", th)
    k_RI = BLAKE2b-256(key=s, person="lqfed-key-r2i", th)

Session frames
--------------
=========  ======  ================================================
field      bytes   meaning
=========  ======  ================================================
length     4       u32: bytes after this field; checked against the
                   limit BEFORE the body is read (``FrameTooLarge``)
counter    8       u64: 0, 1, 2, … per direction; the AEAD nonce is
                   ``00000000 | counter``
sealed     n+17    ChaCha20-Poly1305(kind[1] | payload[n]) with the
                   16-byte tag; AAD = length | counter
=========  ======  ================================================

``kind`` 0 carries a message for ``on_message``; kind 1 is a keepalive sent
when the writer has been quiet for ``keepalive_interval``. A receiver that
hears nothing for ``idle_timeout`` closes the session (``PeerIdle``), which is
how a blackholed link is noticed (a frame body gets longer, in proportion to
its length, see ``read_frame``). A counter below the next expected one is
``ReplayedFrame``, above it ``FrameOutOfOrder`` (TCP does not reorder, so
either means tampering); a bad tag is ``DecryptionFailed``. Directional keys
mean a frame reflected back to its sender fails to decrypt.

Every refusal is counted (``stats()["rejected.<Reason>"]``) and logged as one
event, ``event=rejected me=3 reason=ReplayedFrame peer=0 addr=… detail=…``
(message = event name, fields in ``extra``, as functionary/log.py formats
them), never with a traceback and never with key material.

Limits: a socket that has not completed its handshake may send at most
``HANDSHAKE_LIMIT`` bytes per message and has ``handshake_timeout`` to finish;
at most ``max_pending_handshakes`` such sockets are held at once. Members of
one federation must agree on ``max_frame_size``: a larger frame is refused by
the receiver, which closes the session.

Concurrency: all methods must be called from the event loop that ran
``start()``. ``send`` never blocks: messages wait in a small per-peer queue
(``queue_limit`` messages, ``queue_bytes`` bytes, oldest dropped first), which
is flushed when the session comes (back) up. The consensus protocol tolerates
loss; the queue only smooths short blips.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from functionary.errors import (
    BadHandshakeSignature,
    DecryptionFailed,
    FrameError,
    FrameOutOfOrder,
    FrameTooLarge,
    HandshakeOutOfWindow,
    HandshakeTimeout,
    MalformedFrame,
    MalformedHandshake,
    PeerIdle,
    ReplayedFrame,
    TransportError,
    UnexpectedDialer,
    UnknownPeer,
    WrongFederation,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MIN_BODY_RATE",
    "HANDSHAKE_LIMIT",
    "KIND_DATA",
    "KIND_PING",
    "PROTOCOL_TAG",
    "Finish",
    "Hello",
    "PeerInfo",
    "PeerNetwork",
    "Reply",
    "SecureChannel",
    "federation_tag",
    "initiate",
    "read_frame",
    "respond",
]

PROTOCOL_TAG = b"LQFEDT01"
"""Names the protocol and its version; a future incompatible change bumps it."""

DEFAULT_MAX_FRAME = 8 * 1024 * 1024
MIN_BODY_RATE = 256 * 1024
"""Bytes per second below which a frame body in transit counts as stalled."""
HANDSHAKE_LIMIT = 512

KIND_DATA = 0
KIND_PING = 1

_HELLO, _REPLY, _FINISH = 1, 2, 3
_ROLE_RESPONDER = PROTOCOL_TAG + b" responder"
_ROLE_INITIATOR = PROTOCOL_TAG + b" initiator"
_LEN = struct.Struct(">I")
_HDR = struct.Struct(">IQ")  # length, counter
_AEAD_TAG = nacl.bindings.crypto_aead_chacha20poly1305_ietf_ABYTES
_FRAME_OVERHEAD = 8 + 1 + _AEAD_TAG  # counter, kind, tag
_U16_MAX = 0xFFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF

MessageHandler = Callable[[int, bytes], Awaitable[None] | None]
Clock = Callable[[], float]


def _blake2b(data: bytes, *, person: bytes, key: bytes = b"") -> bytes:
    return nacl.hash.blake2b(data, digest_size=32, key=key, person=person, encoder=nacl.encoding.RawEncoder)


def federation_tag(federation_id: bytes) -> bytes:
    """The 32-byte digest of a federation id that handshakes carry."""
    return _blake2b(federation_id, person=b"lqfed-fed-id")


# --- Handshake messages ------------------------------------------------------


def _check_common(fed: bytes, initiator: int, responder: int, ephemeral: bytes, timestamp_ms: int) -> None:
    if len(fed) != 32:
        raise ValueError("federation tag is 32 bytes")
    if not (0 <= initiator <= _U16_MAX and 0 <= responder <= _U16_MAX):
        raise ValueError("member indices are u16")
    if len(ephemeral) != 32:
        raise ValueError("ephemeral key is 32 bytes")
    if not 0 <= timestamp_ms <= _U64_MAX:
        raise ValueError("timestamp is u64 milliseconds")


def _split(data: bytes, kind: int, size: int, name: str) -> bytes:
    if len(data) != size:
        raise MalformedHandshake(f"{name} is {size} bytes, got {len(data)}")
    if data[:8] != PROTOCOL_TAG:
        raise MalformedHandshake(f"{name} has an unknown protocol tag")
    if data[8] != kind:
        raise MalformedHandshake(f"expected {name} (kind {kind}), got kind {data[8]}")
    return data[9:]


@dataclass(frozen=True, slots=True)
class Hello:
    """First handshake message, initiator → responder (85 bytes)."""

    federation: bytes
    initiator: int
    responder: int
    ephemeral: bytes
    timestamp_ms: int

    SIZE = 85
    _S = struct.Struct(">32sHH32sQ")

    def __post_init__(self) -> None:
        _check_common(self.federation, self.initiator, self.responder, self.ephemeral, self.timestamp_ms)

    def encode(self) -> bytes:
        return (
            PROTOCOL_TAG
            + bytes((_HELLO,))
            + self._S.pack(self.federation, self.initiator, self.responder, self.ephemeral, self.timestamp_ms)
        )

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        return cls(*cls._S.unpack(_split(data, _HELLO, cls.SIZE, "HELLO")))


@dataclass(frozen=True, slots=True)
class Reply:
    """Second handshake message, responder → initiator (149 bytes)."""

    federation: bytes
    initiator: int
    responder: int
    ephemeral: bytes
    timestamp_ms: int
    signature: bytes

    SIZE = 149
    _S = struct.Struct(">32sHH32sQ64s")

    def __post_init__(self) -> None:
        _check_common(self.federation, self.initiator, self.responder, self.ephemeral, self.timestamp_ms)
        if len(self.signature) != 64:
            raise ValueError("signature is 64 bytes")

    def encode(self) -> bytes:
        return (
            PROTOCOL_TAG
            + bytes((_REPLY,))
            + self._S.pack(
                self.federation, self.initiator, self.responder, self.ephemeral, self.timestamp_ms, self.signature
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> Reply:
        return cls(*cls._S.unpack(_split(data, _REPLY, cls.SIZE, "REPLY")))


@dataclass(frozen=True, slots=True)
class Finish:
    """Third handshake message, initiator → responder (73 bytes)."""

    signature: bytes

    SIZE = 73

    def __post_init__(self) -> None:
        if len(self.signature) != 64:
            raise ValueError("signature is 64 bytes")

    def encode(self) -> bytes:
        return PROTOCOL_TAG + bytes((_FINISH,)) + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Finish:
        return cls(_split(data, _FINISH, cls.SIZE, "FINISH"))


def transcript_hash(
    fed: bytes,
    initiator: int,
    responder: int,
    id_initiator: bytes,
    id_responder: bytes,
    e_initiator: bytes,
    e_responder: bytes,
    t_initiator: int,
    t_responder: int,
) -> bytes:
    """The hash both handshake signatures cover; see the module docstring."""
    data = b"".join(
        (
            PROTOCOL_TAG,
            fed,
            struct.pack(">HH", initiator, responder),
            id_initiator,
            id_responder,
            e_initiator,
            e_responder,
            struct.pack(">QQ", t_initiator, t_responder),
        )
    )
    return _blake2b(data, person=b"lqfed-th")


# --- The session cipher ------------------------------------------------------


class SecureChannel:
    """One session's keys and counters. ``seal`` makes a whole wire frame;
    ``open`` checks and decrypts one whose header has been read."""

    __slots__ = ("_recv_key", "_send_key", "max_payload", "peer", "recv_counter", "send_counter")

    def __init__(self, peer: int, send_key: bytes, recv_key: bytes, max_payload: int) -> None:
        self.peer = peer
        self._send_key = send_key
        self._recv_key = recv_key
        self.max_payload = max_payload
        self.send_counter = 0
        self.recv_counter = 0  # the next one expected

    def __repr__(self) -> str:  # never show the keys
        return f"SecureChannel(peer={self.peer}, sent={self.send_counter}, received={self.recv_counter})"

    @property
    def max_wire_length(self) -> int:
        """The largest acceptable value of a frame's length prefix."""
        return self.max_payload + _FRAME_OVERHEAD

    def seal(self, kind: int, payload: bytes) -> bytes:
        if len(payload) > self.max_payload:
            raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds the limit of {self.max_payload}")
        counter = self.send_counter
        self.send_counter += 1
        length = _FRAME_OVERHEAD + len(payload)
        header = _HDR.pack(length, counter)
        nonce = b"\x00\x00\x00\x00" + header[4:]
        sealed = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes((kind,)) + payload, header, nonce, self._send_key
        )
        return header + sealed

    def open(self, header: bytes, sealed: bytes) -> tuple[int, bytes]:
        """``header`` is the 12 bytes of length and counter; ``sealed`` the rest."""
        _, counter = _HDR.unpack(header)
        # The counter is checked first: it is cheap, and a frame with a wrong
        # counter is refused whether or not it is authentic.
        if counter < self.recv_counter:
            raise ReplayedFrame(f"counter {counter} already used; next expected is {self.recv_counter}")
        if counter > self.recv_counter:
            raise FrameOutOfOrder(f"counter {counter} skips ahead of {self.recv_counter}")
        nonce = b"\x00\x00\x00\x00" + header[4:]
        try:
            plain = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(sealed, header, nonce, self._recv_key)
        except nacl.exceptions.CryptoError:
            raise DecryptionFailed(f"frame {counter} does not authenticate") from None
        self.recv_counter += 1
        if not plain or plain[0] not in (KIND_DATA, KIND_PING):
            raise MalformedFrame(f"frame {counter} has an unknown kind")
        return plain[0], plain[1:]


async def read_frame(
    reader: asyncio.StreamReader, channel: SecureChannel, idle_timeout: float | None = None
) -> tuple[int, bytes]:
    """Read one session frame; the length is checked before the body is read.

    With ``idle_timeout``, the length must arrive within it and the body
    within it plus the time to move ``length`` bytes at ``MIN_BODY_RATE``
    (so a big frame on a slow link is not mistaken for a dead one);
    otherwise TimeoutError."""
    async with asyncio.timeout(idle_timeout):
        prefix = await reader.readexactly(4)
    (length,) = _LEN.unpack(prefix)
    if length > channel.max_wire_length:
        raise FrameTooLarge(f"length prefix {length} exceeds the limit of {channel.max_wire_length}")
    if length < _FRAME_OVERHEAD:
        raise MalformedFrame(f"length prefix {length} is shorter than a frame's overhead")
    async with asyncio.timeout(None if idle_timeout is None else idle_timeout + length / MIN_BODY_RATE):
        body = await reader.readexactly(length)
    return channel.open(prefix + body[:8], body[8:])


async def _read_plain(reader: asyncio.StreamReader) -> bytes:
    (length,) = _LEN.unpack(await reader.readexactly(4))
    if length > HANDSHAKE_LIMIT:
        raise FrameTooLarge(f"handshake length prefix {length} exceeds {HANDSHAKE_LIMIT}")
    return await reader.readexactly(length)


def _write_plain(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(_LEN.pack(len(data)) + data)


def _now_ms(clock: Clock) -> int:
    return int(clock() * 1000)


def _check_window(their_ms: int, clock: Clock, window: float, who: str) -> None:
    skew = (their_ms - _now_ms(clock)) / 1000
    if abs(skew) > window:
        raise HandshakeOutOfWindow(f"{who}'s timestamp is {skew:+.1f} s from our clock (window ±{window:g} s)")


def _agree(own: PrivateKey, their_public: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_scalarmult(bytes(own), their_public)
    except nacl.exceptions.CryptoError:  # libsodium refuses an all-zero result
        raise MalformedHandshake("ephemeral key is of low order") from None


def _verify(key: VerifyKey, role: bytes, th: bytes, signature: bytes, who: str) -> None:
    try:
        key.verify(role + th, signature)
    except nacl.exceptions.BadSignatureError:
        raise BadHandshakeSignature(f"transcript not signed by member {who}'s identity key") from None


def _session_keys(shared: bytes, th: bytes) -> tuple[bytes, bytes]:
    i2r = _blake2b(th, key=shared, person=b"lqfed-key-i2r")
    r2i = _blake2b(th, key=shared, person=b"lqfed-key-r2i")
    return i2r, r2i


async def initiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    me: int,
    identity: SigningKey,
    peer: int,
    peer_key: VerifyKey,
    fed: bytes,
    clock: Clock = time.time,
    window: float = 120.0,
    max_payload: int = DEFAULT_MAX_FRAME,
) -> SecureChannel:
    """Run the initiator's side of the handshake on an open connection."""
    eph = PrivateKey.generate()
    hello = Hello(fed, me, peer, bytes(eph.public_key), _now_ms(clock))
    _write_plain(writer, hello.encode())
    await writer.drain()
    reply = Reply.decode(await _read_plain(reader))
    if reply.federation != fed:
        raise WrongFederation(f"member {peer} answered for another federation")
    if (reply.initiator, reply.responder) != (me, peer):
        raise UnexpectedDialer(f"expected a reply for {me}→{peer}, got {reply.initiator}→{reply.responder}")
    _check_window(reply.timestamp_ms, clock, window, f"member {peer}")
    shared = _agree(eph, reply.ephemeral)
    th = transcript_hash(
        fed,
        me,
        peer,
        bytes(identity.verify_key),
        bytes(peer_key),
        hello.ephemeral,
        reply.ephemeral,
        hello.timestamp_ms,
        reply.timestamp_ms,
    )
    _verify(peer_key, _ROLE_RESPONDER, th, reply.signature, str(peer))
    _write_plain(writer, Finish(identity.sign(_ROLE_INITIATOR + th).signature).encode())
    await writer.drain()
    i2r, r2i = _session_keys(shared, th)
    return SecureChannel(peer, i2r, r2i, max_payload)


async def respond(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    me: int,
    identity: SigningKey,
    peers: Mapping[int, VerifyKey],
    fed: bytes,
    clock: Clock = time.time,
    window: float = 120.0,
    max_payload: int = DEFAULT_MAX_FRAME,
    on_claim: Callable[[int], None] | None = None,
) -> SecureChannel:
    """Run the responder's side of the handshake. ``peers`` maps every other
    member to its identity key; only those below ``me`` may dial us.
    ``on_claim`` is told the index the dialer claims as soon as it is known,
    for logging."""
    hello = Hello.decode(await _read_plain(reader))
    if on_claim is not None:
        on_claim(hello.initiator)
    if hello.federation != fed:
        raise WrongFederation(f"dialer claiming member {hello.initiator} is in another federation")
    if hello.responder != me:
        raise UnexpectedDialer(f"handshake addressed to member {hello.responder}, we are {me}")
    if hello.initiator not in peers or hello.initiator == me:
        raise UnknownPeer(f"member {hello.initiator} is not in the federation")
    if hello.initiator > me:
        raise UnexpectedDialer(f"member {hello.initiator} dialled {me}; only lower indices dial")
    _check_window(hello.timestamp_ms, clock, window, f"member {hello.initiator}")
    peer_key = peers[hello.initiator]
    eph = PrivateKey.generate()
    shared = _agree(eph, hello.ephemeral)
    t_r = _now_ms(clock)
    th = transcript_hash(
        fed,
        hello.initiator,
        me,
        bytes(peer_key),
        bytes(identity.verify_key),
        hello.ephemeral,
        bytes(eph.public_key),
        hello.timestamp_ms,
        t_r,
    )
    sig = identity.sign(_ROLE_RESPONDER + th).signature
    _write_plain(writer, Reply(fed, hello.initiator, me, bytes(eph.public_key), t_r, sig).encode())
    await writer.drain()
    finish = Finish.decode(await _read_plain(reader))
    _verify(peer_key, _ROLE_INITIATOR, th, finish.signature, str(hello.initiator))
    i2r, r2i = _session_keys(shared, th)
    return SecureChannel(hello.initiator, r2i, i2r, max_payload)


# --- The network -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One member as the federation file lists it."""

    index: int
    public_key: bytes  # Ed25519 identity key, 32 bytes
    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.index <= _U16_MAX:
            raise ValueError("member index is u16")
        if len(self.public_key) != 32:
            raise ValueError("identity public key is 32 bytes")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError("port out of range")

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_key)


@dataclass(eq=False)
class _Conn:
    """One live session with one peer."""

    peer: int
    direction: str  # "in" | "out"
    channel: SecureChannel
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    close_reason: str | None = None

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        for t in self.tasks:
            t.cancel()


@dataclass(eq=False)
class _Peer:
    info: PeerInfo
    verify_key: VerifyKey
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    conn: _Conn | None = None


class PeerNetwork:
    """This member's view of the federation network.

    ``peers`` is the federation file: every member, ours included (our entry
    is checked against ``identity`` and otherwise ignored). ``listen`` is a
    ``(host, port)`` to bind (port 0 picks one; see ``listen_address``) or an
    already-bound listening socket. ``on_message(peer, data)`` is called for
    every message in the order received from that peer; if it returns an
    awaitable it is awaited before that peer's next frame is read, which is
    back-pressure. An exception from it is logged and counted, not fatal.
    """

    def __init__(
        self,
        me: int,
        identity: SigningKey,
        peers: Mapping[int, PeerInfo],
        listen: tuple[str, int] | socket.socket,
        on_message: MessageHandler,
        federation_id: bytes,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        handshake_window: float = 120.0,
        handshake_timeout: float = 5.0,
        connect_timeout: float = 3.0,
        keepalive_interval: float = 2.0,
        idle_timeout: float = 7.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        queue_limit: int = 64,
        queue_bytes: int = 16 * 1024 * 1024,
        max_pending_handshakes: int = 64,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if me in peers and peers[me].public_key != bytes(identity.verify_key):
            raise ValueError(f"federation file lists another identity key for member {me}")
        if idle_timeout <= keepalive_interval:
            raise ValueError("idle_timeout must exceed keepalive_interval")
        self.me = me
        self._identity = identity
        self._peers: dict[int, _Peer] = {
            i: _Peer(info, info.verify_key) for i, info in sorted(peers.items()) if i != me
        }
        for i, info in peers.items():
            if info.index != i:
                raise ValueError(f"peer entry {i} names index {info.index}")
        self._listen = listen
        self._on_message = on_message
        self._fed = federation_tag(federation_id)
        self._log = logger
        self.max_frame_size = max_frame_size
        self.handshake_window = handshake_window
        self.handshake_timeout = handshake_timeout
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.idle_timeout = idle_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.queue_limit = queue_limit
        self.queue_bytes = queue_bytes
        self.max_pending_handshakes = max_pending_handshakes
        self._pending_handshakes = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Every socket we hold, so that stop() closes even those whose task
        # was cancelled before it first ran.
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = False
        self._stopping = False
        self._peer_keys = {i: p.verify_key for i, p in self._peers.items()}

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and start dialling every higher-indexed member."""
        if self._started:
            raise RuntimeError("PeerNetwork already started")
        self._started = True
        if isinstance(self._listen, socket.socket):
            self._server = await asyncio.start_server(self._on_inbound, sock=self._listen)
        else:
            host, port = self._listen
            self._server = await asyncio.start_server(self._on_inbound, host, port)
        host, port = self.listen_address
        self._event(logging.INFO, "listening", addr=f"{host}:{port}")
        for j in self._peers:
            if j > self.me:
                self._spawn(self._dial_loop(self._peers[j]), f"dial-{self.me}-{j}")

    async def stop(self) -> None:
        """Close every session and the listener; wait for every task to end."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for p in self._peers.values():
            if p.conn is not None:
                p.conn.close("stopping")
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in list(self._writers):
            await self._close_writer(w)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self._event(logging.INFO, "stopped")

    @property
    def listen_address(self) -> tuple[str, int]:
        """The bound (host, port); only valid after ``start``."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("not listening")
        addr = self._server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    # -- sending ----------------------------------------------------------------

    def send(self, peer: int, data: bytes) -> None:
        """Queue ``data`` for ``peer``; never blocks. Raises ``UnknownPeer``
        for an index not in the federation (or our own) and ``FrameTooLarge``
        above ``max_frame_size``. Delivery is best effort."""
        p = self._peers.get(peer)
        if p is None:
            raise UnknownPeer(f"member {peer} is not a peer of member {self.me}")
        if len(data) > self.max_frame_size:
            raise FrameTooLarge(f"message of {len(data)} bytes exceeds the limit of {self.max_frame_size}")
        if self._stopping:
            self._stats["sent_after_stop"] += 1
            return
        data = bytes(data)
        p.queue.append(data)
        p.queued_bytes += len(data)
        while len(p.queue) > 1 and (len(p.queue) > self.queue_limit or p.queued_bytes > self.queue_bytes):
            old = p.queue.popleft()
            p.queued_bytes -= len(old)
            self._stats["queue_dropped"] += 1
        p.wake.set()

    def broadcast(self, data: bytes) -> None:
        """``send`` to every other member."""
        for peer in self._peers:
            self.send(peer, data)

    # -- observing --------------------------------------------------------------

    def connected_peers(self) -> set[int]:
        """Members with an authenticated session right now."""
        return {i for i, p in self._peers.items() if p.conn is not None}

    def stats(self) -> dict[str, int]:
        """Counters since start: handshakes, frames and bytes each way, queue
        drops, and ``rejected.<Reason>`` for every refusal."""
        return dict(self._stats)

    def queued(self, peer: int) -> int:
        """Messages waiting for ``peer``."""
        return len(self._peers[peer].queue)

    # -- internals --------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _event(self, level: int, event: str, **fields: object) -> None:
        # The project's convention (functionary/log.py): the message is the
        # event name and the fields ride in ``extra``, which the key=value
        # formatter prints as one line: event=rejected me=3 reason=… peer=0 …
        if self._log.isEnabledFor(level):
            extra = {"event": event, "me": self.me, **{k: v for k, v in fields.items() if v is not None}}
            self._log.log(level, event, extra=extra)

    def _reject(self, err: TransportError, **fields: object) -> None:
        self._stats[f"rejected.{err.code}"] += 1
        self._event(logging.WARNING, "rejected", reason=err.code, **fields, detail=str(err))

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempt - 1)))
        return self._rng.uniform(delay / 2, delay)

    async def _dial_loop(self, p: _Peer) -> None:
        attempt = 0
        while not self._stopping:
            if attempt:
                await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            info = p.info
            addr = f"{info.host}:{info.port}"
            self._stats["dials"] += 1
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await asyncio.open_connection(info.host, info.port)
                self._writers.add(writer)
            except (OSError, TimeoutError) as e:
                self._stats["dial_failures"] += 1
                self._event(logging.DEBUG, "dial_failed", peer=info.index, addr=addr, error=type(e).__name__)
                continue
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    channel = await initiate(
                        reader,
                        writer,
                        me=self.me,
                        identity=self._identity,
                        peer=info.index,
                        peer_key=p.verify_key,
                        fed=self._fed,
                        clock=self._clock,
                        window=self.handshake_window,
                        max_payload=self.max_frame_size,
                    )
            except TimeoutError:
                await self._close_writer(writer)
                self._reject(HandshakeTimeout("no reply in time"), peer=info.index, addr=addr, dir="out")
                continue
            except TransportError as e:
                await self._close_writer(writer)
                self._reject(e, peer=info.index, addr=addr, dir="out")
                continue
            except (OSError, asyncio.IncompleteReadError) as e:
                await self._close_writer(writer)
                self._stats["dial_failures"] += 1
                self._event(logging.INFO, "handshake_aborted", peer=info.index, addr=addr, error=type(e).__name__)
                continue
            attempt = 1  # a session ended: come back quickly, but not in a tight loop
            await self._session(p, channel, reader, writer, "out", addr)

    def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that hands the connection to a task we own: the
        # stream protocol's own task (Python 3.11) mishandles cancellation.
        if self._stopping:
            writer.close()
            return
        if self._pending_handshakes >= self.max_pending_handshakes:
            # Unauthenticated sockets must not pile up without bound.
            self._stats["inbound_refused_busy"] += 1
            writer.close()
            return
        self._writers.add(writer)
        self._pending_handshakes += 1
        self._spawn(self._inbound(reader, writer), f"inbound-{self.me}")

    async def _inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        addr = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        claimed: list[int] = []
        try:
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    channel = await respond(
                        reader,
                        writer,
                        me=self.me,
                        identity=self._identity,
                        peers=self._peer_keys,
                        fed=self._fed,
                        clock=self._clock,
                        window=self.handshake_window,
                        max_payload=self.max_frame_size,
                        on_claim=claimed.append,
                    )
            except TimeoutError:
                timeout = HandshakeTimeout("no complete handshake in time")
                self._reject(timeout, peer=_first(claimed), addr=addr, dir="in")
                return
            except TransportError as e:
                self._reject(e, peer=_first(claimed), addr=addr, dir="in")
                return
            except (OSError, asyncio.IncompleteReadError) as e:
                self._event(logging.INFO, "handshake_aborted", peer=_first(claimed), addr=addr, error=type(e).__name__)
                return
            finally:
                self._pending_handshakes -= 1
            await self._session(self._peers[channel.peer], channel, reader, writer, "in", addr)
        finally:
            await self._close_writer(writer)

    async def _session(
        self,
        p: _Peer,
        channel: SecureChannel,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        addr: str,
    ) -> None:
        if p.conn is not None:
            p.conn.close("replaced")
        conn = _Conn(p.info.index, direction, channel, reader, writer)
        p.conn = conn
        self._stats["handshakes_ok"] += 1
        self._event(logging.INFO, "connected", peer=p.info.index, addr=addr, dir=direction)
        conn.tasks = [
            asyncio.ensure_future(self._read_loop(p, conn)),
            asyncio.ensure_future(self._write_loop(p, conn)),
        ]
        try:
            done, _ = await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t.cancelled():
                    continue
                e = t.exception()
                if isinstance(e, FrameError):
                    self._reject(e, peer=p.info.index, addr=addr, dir=direction)
                    conn.close_reason = conn.close_reason or e.code
                elif e is not None:
                    conn.close_reason = conn.close_reason or _reason(e)
        finally:
            conn.close(conn.close_reason or "closed")
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            if p.conn is conn:
                p.conn = None
            await self._close_writer(writer)
            self._stats["disconnects"] += 1
            self._stats[f"disconnect.{conn.close_reason}"] += 1
            self._event(logging.INFO, "disconnected", peer=p.info.index, reason=conn.close_reason, dir=direction)

    async def _read_loop(self, p: _Peer, conn: _Conn) -> None:
        while True:
            try:
                kind, payload = await read_frame(conn.reader, conn.channel, self.idle_timeout)
            except TimeoutError:
                raise PeerIdle(f"nothing from member {p.info.index} for {self.idle_timeout:g} s") from None
            self._stats["frames_received"] += 1
            self._stats["bytes_received"] += len(payload) + _FRAME_OVERHEAD + 4
            if kind != KIND_DATA:
                continue
            self._stats["messages_received"] += 1
            try:
                result = self._on_message(p.info.index, payload)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._stats["handler_errors"] += 1
                self._event(logging.ERROR, "handler_error", peer=p.info.index, error=type(e).__name__, detail=str(e))

    async def _write_loop(self, p: _Peer, conn: _Conn) -> None:
        writer, channel = conn.writer, conn.channel
        while True:
            if p.queue:
                data = p.queue.popleft()
                p.queued_bytes -= len(data)
                frame = channel.seal(KIND_DATA, data)
                writer.write(frame)
                self._stats["messages_sent"] += 1
            else:
                await writer.drain()
                if p.queue:
                    continue
                p.wake.clear()
                try:
                    async with asyncio.timeout(self.keepalive_interval):
                        await p.wake.wait()
                    continue
                except TimeoutError:
                    frame = channel.seal(KIND_PING, b"")
                    writer.write(frame)
            self._stats["frames_sent"] += 1
            self._stats["bytes_sent"] += len(frame)
            await writer.drain()

    async def _close_writer(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


def _first(items: list[int]) -> int | None:
    return items[0] if items else None


def _reason(e: BaseException) -> str:
    if isinstance(e, TransportError):
        return e.code
    if isinstance(e, asyncio.IncompleteReadError):
        return "eof"
    return type(e).__name__
