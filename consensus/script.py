"""Script primitives: opcodes, minimal pushes, multisig templates, and the
signature checks Elements applies to block proofs and segwit spends.

This is not a script interpreter. The chain accepts a closed set of
templates (P2WPKH, P2WSH m-of-n CHECKMULTISIG, the legacy signblockscript),
and each is checked by code written for that template, with the same
outcome Elements' interpreter gives under its standard flags.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ParseError

OP_0 = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_1 = 0x51
OP_16 = 0x60
OP_IF = 0x63
OP_ELSE = 0x67
OP_ENDIF = 0x68
OP_RETURN = 0x6A
OP_DEPTH = 0x74
OP_DROP = 0x75
OP_DUP = 0x76
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_HASH160 = 0xA9
OP_CHECKSIG = 0xAC
OP_CHECKMULTISIG = 0xAE
OP_CHECKSEQUENCEVERIFY = 0xB2

MAX_SCRIPT_ELEMENT_SIZE = 520
MAX_PUBKEYS_PER_MULTISIG = 20  # Bitcoin's limit; the federation caps n at 15


def small_int_opcode(n: int) -> int:
    """OP_0, OP_1 .. OP_16 for 0 <= n <= 16."""
    if n == 0:
        return OP_0
    if 1 <= n <= 16:
        return OP_1 + n - 1
    raise ValueError(f"{n} has no small-integer opcode")


def decode_small_int(op: int) -> int:
    if op == OP_0:
        return 0
    if OP_1 <= op <= OP_16:
        return op - OP_1 + 1
    raise ParseError(f"opcode 0x{op:02x} is not a small integer")


def push_data(data: bytes) -> bytes:
    """The minimal push of ``data`` (MINIMALDATA), as Bitcoin Core's
    ``CScript << vector`` produces for data, except that it never turns a
    one-byte value into OP_N: signatures and keys are never one byte."""
    n = len(data)
    if n < OP_PUSHDATA1:
        return bytes((n,)) + data
    if n <= 0xFF:
        return bytes((OP_PUSHDATA1, n)) + data
    if n <= 0xFFFF:
        return bytes((OP_PUSHDATA2,)) + n.to_bytes(2, "little") + data
    return bytes((OP_PUSHDATA4,)) + n.to_bytes(4, "little") + data


def push_int(n: int) -> bytes:
    """A minimal script number push (CScriptNum)."""
    if n == 0 or 1 <= n <= 16:
        return bytes((small_int_opcode(n),))
    if n == -1:
        return bytes((OP_1NEGATE,))
    neg = n < 0
    v = abs(n)
    out = bytearray()
    while v:
        out.append(v & 0xFF)
        v >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0)
    elif neg:
        out[-1] |= 0x80
    return push_data(bytes(out))


def iter_ops(script: bytes) -> list[tuple[int, bytes | None]]:
    """Split a script into (opcode, pushed data or None).

    Raises ParseError on a push that runs past the end of the script.
    """
    ops: list[tuple[int, bytes | None]] = []
    i = 0
    n = len(script)
    while i < n:
        op = script[i]
        i += 1
        if op < OP_PUSHDATA1:
            size = op
        elif op == OP_PUSHDATA1:
            if i + 1 > n:
                raise ParseError("truncated OP_PUSHDATA1")
            size = script[i]
            i += 1
        elif op == OP_PUSHDATA2:
            if i + 2 > n:
                raise ParseError("truncated OP_PUSHDATA2")
            size = int.from_bytes(script[i : i + 2], "little")
            i += 2
        elif op == OP_PUSHDATA4:
            if i + 4 > n:
                raise ParseError("truncated OP_PUSHDATA4")
            size = int.from_bytes(script[i : i + 4], "little")
            i += 4
        else:
            ops.append((op, None))
            continue
        if i + size > n:
            raise ParseError("push past end of script")
        ops.append((op, script[i : i + size]))
        i += size
    return ops


def is_minimal_push(op: int, data: bytes) -> bool:
    """Bitcoin Core's CheckMinimalPush (MINIMALDATA)."""
    n = len(data)
    if n == 0:
        return op == OP_0
    if n == 1 and 1 <= data[0] <= 16:
        return False  # should have been OP_1..OP_16
    if n == 1 and data[0] == 0x81:
        return False  # should have been OP_1NEGATE
    if n <= 75:
        return op == n
    if n <= 255:
        return op == OP_PUSHDATA1
    if n <= 65535:
        return op == OP_PUSHDATA2
    return True


def parse_push_only(script: bytes) -> list[bytes]:
    """The stack a push-only script (SIGPUSHONLY) leaves, refusing
    non-minimal pushes (MINIMALDATA). OP_1..OP_16 and OP_1NEGATE are refused
    too: no solution this chain accepts needs them."""
    stack: list[bytes] = []
    for op, data in iter_ops(script):
        if data is None:
            raise ParseError(f"opcode 0x{op:02x} in a push-only script")
        if not is_minimal_push(op, data):
            raise ParseError("non-minimal push")
        stack.append(data)
    return stack


# --- Multisig template -------------------------------------------------------


def multisig_script(m: int, pubkeys: Sequence[bytes]) -> bytes:
    """``OP_m <key_1> .. <key_n> OP_n OP_CHECKMULTISIG``."""
    n = len(pubkeys)
    if not 1 <= m <= n <= 16:
        raise ValueError(f"bad multisig {m}-of-{n}")
    return (
        bytes((small_int_opcode(m),))
        + b"".join(push_data(k) for k in pubkeys)
        + bytes((small_int_opcode(n), OP_CHECKMULTISIG))
    )


def parse_multisig_script(script: bytes) -> tuple[int, tuple[bytes, ...]]:
    """Inverse of :func:`multisig_script` for compressed keys; ParseError on
    anything else."""
    ops = iter_ops(script)
    if len(ops) < 4 or ops[-1] != (OP_CHECKMULTISIG, None):
        raise ParseError("not a multisig script")
    m = decode_small_int(ops[0][0]) if ops[0][1] is None else -1
    n = decode_small_int(ops[-2][0]) if ops[-2][1] is None else -1
    keys: list[bytes] = []
    for op, data in ops[1:-2]:
        if data is None or len(data) != 33 or op != 33 or data[0] not in (2, 3):
            raise ParseError("multisig key is not a compressed public key")
        keys.append(data)
    if not 1 <= m <= n == len(keys):
        raise ParseError("multisig counts do not match its keys")
    if multisig_script(m, keys) != script:
        raise ParseError("non-canonical multisig script")
    return m, tuple(keys)


# --- Signature encoding (BIP66 strict DER, LOW_S) ----------------------------

_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def is_strict_der(sig: bytes) -> bool:
    """BIP66's IsValidSignatureEncoding, for a DER signature *without* a
    trailing sighash byte."""
    n = len(sig)
    if n < 8 or n > 72:
        return False
    if sig[0] != 0x30 or sig[1] != n - 2:
        return False
    len_r = sig[3]
    if 5 + len_r >= n:
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 6 != n:
        return False
    if sig[2] != 0x02 or len_r == 0 or sig[4] & 0x80:
        return False
    if len_r > 1 and sig[4] == 0 and not sig[5] & 0x80:
        return False
    if sig[len_r + 4] != 0x02 or len_s == 0 or sig[len_r + 6] & 0x80:
        return False
    if len_s > 1 and sig[len_r + 6] == 0 and not sig[len_r + 7] & 0x80:
        return False
    return True


def is_low_s(sig: bytes) -> bool:
    """LOW_S for a strict-DER signature (call :func:`is_strict_der` first)."""
    len_r = sig[3]
    s = int.from_bytes(sig[6 + len_r :], "big")
    return 0 < s <= _HALF_ORDER
