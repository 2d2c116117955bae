"""The functionary error tree: everything the I/O layer refuses, by name.

Callers that only care whether an operation worked catch
:class:`FunctionaryError`; logs and the status command use ``code`` (the class
name) as a stable, machine-readable reason.

    FunctionaryError
    ├── TransportError                  the authenticated peer network
    │   ├── HandshakeError              a connection that never became a session
    │   │   ├── UnknownPeer             an index not in the federation file
    │   │   ├── UnexpectedDialer        a member dialling in the wrong direction
    │   │   ├── WrongFederation         another federation's id
    │   │   ├── MalformedHandshake      wrong tag, length or kind; a low-order key
    │   │   ├── BadHandshakeSignature   not signed by the claimed member's key
    │   │   ├── HandshakeOutOfWindow    a timestamp too far from our clock
    │   │   └── HandshakeTimeout        no complete handshake in time
    │   ├── FrameError                  a session frame that was refused
    │   │   ├── FrameTooLarge           length prefix over the limit (body unread)
    │   │   ├── MalformedFrame          shorter than its header, unknown kind
    │   │   ├── ReplayedFrame           counter at or below one already seen
    │   │   ├── FrameOutOfOrder         counter skipped ahead
    │   │   └── DecryptionFailed        the AEAD tag does not verify
    │   └── PeerIdle                    nothing received within the idle timeout
    ├── StorageError                    the durable database
    │   ├── SchemaTooNew                written by a newer version of this software
    │   ├── ChainMismatch               the database belongs to another chain
    │   ├── CorruptDatabase             a stored invariant does not hold
    │   ├── BlockConflict               commit_block not extending the tip, a duplicate
    │   ├── UtxoNotFound                commit_block spending an output not stored
    │   └── SignLockRegression          a sign-lock below the one already saved
    └── ExchangeApiError                a refused POST /pegouts (status, code)
        ├── ExchangeAuthError           401: who is asking could not be proven
        │   ├── MissingAuthentication   a header absent or malformed
        │   ├── UnknownExchange         an id not in federation.json "exchanges"
        │   ├── StaleTimestamp          outside the five-minute window
        │   ├── BadSignature            not signed by the exchange's key
        │   └── ReplayedRequest         a signature already accepted
        ├── RateLimited                 429: over the exchange's request budget
        ├── BodyTooLarge                413: over the body limit (body unread)
        ├── InvalidPegoutRequest        400: not {"tx": hex} or not a transaction
        ├── NoPegout                    422: a transaction without a peg-out output
        └── IdempotencyKeyReused        422: the key came with another request

Every error carries only what is safe to log: indices, addresses, heights,
counts, hex hashes. Never key material.
"""

from __future__ import annotations


class FunctionaryError(Exception):
    """Root of every error raised by the functionary package."""

    @property
    def code(self) -> str:
        """A stable machine-readable name: the class name."""
        return type(self).__name__


# --- Transport -------------------------------------------------------------


class TransportError(FunctionaryError):
    """The peer network refused a connection, a handshake or a frame."""


class HandshakeError(TransportError):
    """A connection that did not become an authenticated session."""


class UnknownPeer(HandshakeError):
    """A member index that is not in the federation file (or is our own)."""


class UnexpectedDialer(HandshakeError):
    """A known member dialling in the wrong direction, or a handshake that
    names another member as its responder. Only lower indices dial higher."""


class WrongFederation(HandshakeError):
    """A handshake for another federation id."""


class MalformedHandshake(HandshakeError):
    """A handshake message with the wrong tag, kind or length, or an
    ephemeral key that yields an all-zero shared secret."""


class BadHandshakeSignature(HandshakeError):
    """A handshake transcript not signed by the claimed member's identity key."""


class HandshakeOutOfWindow(HandshakeError):
    """A handshake timestamp further from our clock than the allowed window."""


class HandshakeTimeout(HandshakeError):
    """The handshake did not complete within its deadline."""


class FrameError(TransportError):
    """A frame refused on an established session; the connection is closed."""


class FrameTooLarge(FrameError):
    """A length prefix above the limit. Raised before the body is read, and
    locally when asked to send more than the limit."""


class MalformedFrame(FrameError):
    """A frame shorter than its header, or with an unknown payload kind."""


class ReplayedFrame(FrameError):
    """A frame counter at or below one already received on this session."""


class FrameOutOfOrder(FrameError):
    """A frame counter that skips ahead of the next expected one."""


class DecryptionFailed(FrameError):
    """A frame whose authentication tag does not verify under the session key."""


class PeerIdle(TransportError):
    """Nothing (not even a keepalive) arrived within the idle timeout."""


# --- Storage ---------------------------------------------------------------


class StorageError(FunctionaryError):
    """The database refused an operation or holds something it should not."""


class SchemaTooNew(StorageError):
    """The database was written by a newer version of this software."""


class ChainMismatch(StorageError):
    """The database records another chain id than the one asked for."""


class CorruptDatabase(StorageError):
    """A stored invariant does not hold. ``problems`` lists each one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("corrupt database: " + "; ".join(self.problems))


class BlockConflict(StorageError):
    """A block that does not extend the stored tip, or repeats a stored hash
    or transaction id."""


class UtxoNotFound(StorageError):
    """A block spends an output the database does not hold."""


class SignLockRegression(StorageError):
    """A sign-lock at a lower height than the one already saved."""


# --- Exchange API ----------------------------------------------------------


class ExchangeApiError(FunctionaryError):
    """A peg-out request the exchange API refuses; ``status`` is its HTTP status."""

    status = 400


class ExchangeAuthError(ExchangeApiError):
    """The request does not prove which registered exchange sent it."""

    status = 401


class MissingAuthentication(ExchangeAuthError):
    """An authentication header is absent or malformed."""


class UnknownExchange(ExchangeAuthError):
    """The exchange id is not registered in the federation file."""


class StaleTimestamp(ExchangeAuthError):
    """The request's timestamp is outside the window around our clock."""


class BadSignature(ExchangeAuthError):
    """The signature does not verify under the exchange's key."""


class ReplayedRequest(ExchangeAuthError):
    """This exact signed request was accepted before (and carries no idempotency key)."""


class RateLimited(ExchangeApiError):
    """The exchange is over its request budget; ``retry_after`` in seconds."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BodyTooLarge(ExchangeApiError):
    """The body is over the limit; it was not read."""

    status = 413


class InvalidPegoutRequest(ExchangeApiError):
    """The body is not ``{"tx": "<hex>"}`` holding one Elements transaction."""


class NoPegout(ExchangeApiError):
    """The transaction has no peg-out output: use POST /tx for it."""

    status = 422


class IdempotencyKeyReused(ExchangeApiError):
    """The idempotency key was used before with a different request body."""

    status = 422
