"""Bitcoin script: an interpreter for legacy and witness v0 scripts, both signature
hashes, output classification, and Core's ``asm`` and descriptor forms.

What it evaluates, and how it answers, follows Bitcoin Core's ``src/script``:
every opcode that is enabled in legacy and segwit v0 script (disabled opcodes,
reserved opcodes and limits fail with Core's error), the legacy signature hash
with FindAndDelete and OP_CODESEPARATOR, the BIP143 hash, BIP65/BIP112 lock
time opcodes, and ECDSA through libsecp256k1 (coincurve), normalising S for
consensus as Core's ``CPubKey::Verify`` does. Errors carry Core's
``ScriptErrorString`` text, because mempool reject reasons embed it.

Not implemented: taproot (BIP341/342). The chain refuses to create witness v1
outputs, so nothing here is ever asked to spend one.

| flag (Core name)        | value  | consensus here | what it requires                           |
|-------------------------|--------|----------------|--------------------------------------------|
| P2SH                    | 1<<0   | yes            | BIP16 redeem scripts                       |
| STRICTENC               | 1<<1   | policy         | defined hash types, well-formed keys       |
| DERSIG                  | 1<<2   | yes            | BIP66 strict DER                           |
| LOW_S                   | 1<<3   | policy         | S <= n/2                                   |
| NULLDUMMY               | 1<<4   | yes            | CHECKMULTISIG dummy is empty (BIP147)      |
| SIGPUSHONLY             | 1<<5   | policy         | scriptSig is push-only                     |
| MINIMALDATA             | 1<<6   | policy         | minimal pushes and numbers                 |
| DISCOURAGE_UPGRADABLE_NOPS | 1<<7 | policy        | NOP1, NOP4..NOP10 fail                     |
| CLEANSTACK              | 1<<8   | policy         | one stack item left (legacy/P2SH)          |
| CHECKLOCKTIMEVERIFY     | 1<<9   | yes            | BIP65                                      |
| CHECKSEQUENCEVERIFY     | 1<<10  | yes            | BIP112                                     |
| WITNESS                 | 1<<11  | yes            | BIP141/143                                 |
| DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM | 1<<12 | policy | witness v2+ spends fail           |
| MINIMALIF               | 1<<13  | policy         | witness v0 IF argument is empty or 0x01    |
| NULLFAIL                | 1<<14  | policy         | failed signature checks had empty sigs     |
| WITNESS_PUBKEYTYPE      | 1<<15  | policy         | compressed keys in witness v0              |
| CONST_SCRIPTCODE        | 1<<16  | policy         | no OP_CODESEPARATOR/FindAndDelete hits     |
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum

from coincurve import PublicKey

from .primitives import Transaction, TxOut, hash160, ripemd160, ser_bytes, ser_compact_size, sha256, sha256d

# --- opcodes ---------------------------------------------------------------------------------

OP_0 = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_RESERVED = 0x50
OP_1 = 0x51
OP_16 = 0x60
OP_NOP = 0x61
OP_VER = 0x62
OP_IF = 0x63
OP_NOTIF = 0x64
OP_VERIF = 0x65
OP_VERNOTIF = 0x66
OP_ELSE = 0x67
OP_ENDIF = 0x68
OP_VERIFY = 0x69
OP_RETURN = 0x6A
OP_TOALTSTACK = 0x6B
OP_FROMALTSTACK = 0x6C
OP_2DROP = 0x6D
OP_2DUP = 0x6E
OP_3DUP = 0x6F
OP_2OVER = 0x70
OP_2ROT = 0x71
OP_2SWAP = 0x72
OP_IFDUP = 0x73
OP_DEPTH = 0x74
OP_DROP = 0x75
OP_DUP = 0x76
OP_NIP = 0x77
OP_OVER = 0x78
OP_PICK = 0x79
OP_ROLL = 0x7A
OP_ROT = 0x7B
OP_SWAP = 0x7C
OP_TUCK = 0x7D
OP_CAT = 0x7E
OP_SUBSTR = 0x7F
OP_LEFT = 0x80
OP_RIGHT = 0x81
OP_SIZE = 0x82
OP_INVERT = 0x83
OP_AND = 0x84
OP_OR = 0x85
OP_XOR = 0x86
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_RESERVED1 = 0x89
OP_RESERVED2 = 0x8A
OP_1ADD = 0x8B
OP_1SUB = 0x8C
OP_2MUL = 0x8D
OP_2DIV = 0x8E
OP_NEGATE = 0x8F
OP_ABS = 0x90
OP_NOT = 0x91
OP_0NOTEQUAL = 0x92
OP_ADD = 0x93
OP_SUB = 0x94
OP_MUL = 0x95
OP_DIV = 0x96
OP_MOD = 0x97
OP_LSHIFT = 0x98
OP_RSHIFT = 0x99
OP_BOOLAND = 0x9A
OP_BOOLOR = 0x9B
OP_NUMEQUAL = 0x9C
OP_NUMEQUALVERIFY = 0x9D
OP_NUMNOTEQUAL = 0x9E
OP_LESSTHAN = 0x9F
OP_GREATERTHAN = 0xA0
OP_LESSTHANOREQUAL = 0xA1
OP_GREATERTHANOREQUAL = 0xA2
OP_MIN = 0xA3
OP_MAX = 0xA4
OP_WITHIN = 0xA5
OP_RIPEMD160 = 0xA6
OP_SHA1 = 0xA7
OP_SHA256 = 0xA8
OP_HASH160 = 0xA9
OP_HASH256 = 0xAA
OP_CODESEPARATOR = 0xAB
OP_CHECKSIG = 0xAC
OP_CHECKSIGVERIFY = 0xAD
OP_CHECKMULTISIG = 0xAE
OP_CHECKMULTISIGVERIFY = 0xAF
OP_NOP1 = 0xB0
OP_CHECKLOCKTIMEVERIFY = 0xB1
OP_CHECKSEQUENCEVERIFY = 0xB2
OP_NOP4 = 0xB3
OP_NOP10 = 0xB9
OP_CHECKSIGADD = 0xBA

_OP_NAMES: dict[int, str] = {
    OP_PUSHDATA1: "OP_PUSHDATA1",
    OP_PUSHDATA2: "OP_PUSHDATA2",
    OP_PUSHDATA4: "OP_PUSHDATA4",
    OP_RESERVED: "OP_RESERVED",
    OP_NOP: "OP_NOP",
    OP_VER: "OP_VER",
    OP_IF: "OP_IF",
    OP_NOTIF: "OP_NOTIF",
    OP_VERIF: "OP_VERIF",
    OP_VERNOTIF: "OP_VERNOTIF",
    OP_ELSE: "OP_ELSE",
    OP_ENDIF: "OP_ENDIF",
    OP_VERIFY: "OP_VERIFY",
    OP_RETURN: "OP_RETURN",
    OP_TOALTSTACK: "OP_TOALTSTACK",
    OP_FROMALTSTACK: "OP_FROMALTSTACK",
    OP_2DROP: "OP_2DROP",
    OP_2DUP: "OP_2DUP",
    OP_3DUP: "OP_3DUP",
    OP_2OVER: "OP_2OVER",
    OP_2ROT: "OP_2ROT",
    OP_2SWAP: "OP_2SWAP",
    OP_IFDUP: "OP_IFDUP",
    OP_DEPTH: "OP_DEPTH",
    OP_DROP: "OP_DROP",
    OP_DUP: "OP_DUP",
    OP_NIP: "OP_NIP",
    OP_OVER: "OP_OVER",
    OP_PICK: "OP_PICK",
    OP_ROLL: "OP_ROLL",
    OP_ROT: "OP_ROT",
    OP_SWAP: "OP_SWAP",
    OP_TUCK: "OP_TUCK",
    OP_CAT: "OP_CAT",
    OP_SUBSTR: "OP_SUBSTR",
    OP_LEFT: "OP_LEFT",
    OP_RIGHT: "OP_RIGHT",
    OP_SIZE: "OP_SIZE",
    OP_INVERT: "OP_INVERT",
    OP_AND: "OP_AND",
    OP_OR: "OP_OR",
    OP_XOR: "OP_XOR",
    OP_EQUAL: "OP_EQUAL",
    OP_EQUALVERIFY: "OP_EQUALVERIFY",
    OP_RESERVED1: "OP_RESERVED1",
    OP_RESERVED2: "OP_RESERVED2",
    OP_1ADD: "OP_1ADD",
    OP_1SUB: "OP_1SUB",
    OP_2MUL: "OP_2MUL",
    OP_2DIV: "OP_2DIV",
    OP_NEGATE: "OP_NEGATE",
    OP_ABS: "OP_ABS",
    OP_NOT: "OP_NOT",
    OP_0NOTEQUAL: "OP_0NOTEQUAL",
    OP_ADD: "OP_ADD",
    OP_SUB: "OP_SUB",
    OP_MUL: "OP_MUL",
    OP_DIV: "OP_DIV",
    OP_MOD: "OP_MOD",
    OP_LSHIFT: "OP_LSHIFT",
    OP_RSHIFT: "OP_RSHIFT",
    OP_BOOLAND: "OP_BOOLAND",
    OP_BOOLOR: "OP_BOOLOR",
    OP_NUMEQUAL: "OP_NUMEQUAL",
    OP_NUMEQUALVERIFY: "OP_NUMEQUALVERIFY",
    OP_NUMNOTEQUAL: "OP_NUMNOTEQUAL",
    OP_LESSTHAN: "OP_LESSTHAN",
    OP_GREATERTHAN: "OP_GREATERTHAN",
    OP_LESSTHANOREQUAL: "OP_LESSTHANOREQUAL",
    OP_GREATERTHANOREQUAL: "OP_GREATERTHANOREQUAL",
    OP_MIN: "OP_MIN",
    OP_MAX: "OP_MAX",
    OP_WITHIN: "OP_WITHIN",
    OP_RIPEMD160: "OP_RIPEMD160",
    OP_SHA1: "OP_SHA1",
    OP_SHA256: "OP_SHA256",
    OP_HASH160: "OP_HASH160",
    OP_HASH256: "OP_HASH256",
    OP_CODESEPARATOR: "OP_CODESEPARATOR",
    OP_CHECKSIG: "OP_CHECKSIG",
    OP_CHECKSIGVERIFY: "OP_CHECKSIGVERIFY",
    OP_CHECKMULTISIG: "OP_CHECKMULTISIG",
    OP_CHECKMULTISIGVERIFY: "OP_CHECKMULTISIGVERIFY",
    OP_NOP1: "OP_NOP1",
    OP_CHECKLOCKTIMEVERIFY: "OP_CHECKLOCKTIMEVERIFY",
    OP_CHECKSEQUENCEVERIFY: "OP_CHECKSEQUENCEVERIFY",
    0xB3: "OP_NOP4",
    0xB4: "OP_NOP5",
    0xB5: "OP_NOP6",
    0xB6: "OP_NOP7",
    0xB7: "OP_NOP8",
    0xB8: "OP_NOP9",
    0xB9: "OP_NOP10",
    OP_CHECKSIGADD: "OP_CHECKSIGADD",
}

_DISABLED = frozenset(
    {
        *(OP_CAT, OP_SUBSTR, OP_LEFT, OP_RIGHT, OP_INVERT, OP_AND, OP_OR, OP_XOR),
        *(OP_2MUL, OP_2DIV, OP_MUL, OP_DIV, OP_MOD, OP_LSHIFT, OP_RSHIFT),
    }
)

MAX_SCRIPT_SIZE = 10_000
MAX_SCRIPT_ELEMENT_SIZE = 520
MAX_OPS_PER_SCRIPT = 201
MAX_PUBKEYS_PER_MULTISIG = 20
MAX_STACK_SIZE = 1000
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0x0000FFFF
SEQUENCE_LOCKTIME_GRANULARITY = 9  # time-based relative locks count units of 512 s

SIGHASH_ALL = 1
SIGHASH_NONE = 2
SIGHASH_SINGLE = 3
SIGHASH_ANYONECANPAY = 0x80

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_UINT256_ONE = b"\x01" + b"\x00" * 31


class SigVersion(Enum):
    BASE = 0
    WITNESS_V0 = 1


class Flag(IntEnum):
    P2SH = 1 << 0
    STRICTENC = 1 << 1
    DERSIG = 1 << 2
    LOW_S = 1 << 3
    NULLDUMMY = 1 << 4
    SIGPUSHONLY = 1 << 5
    MINIMALDATA = 1 << 6
    DISCOURAGE_UPGRADABLE_NOPS = 1 << 7
    CLEANSTACK = 1 << 8
    CHECKLOCKTIMEVERIFY = 1 << 9
    CHECKSEQUENCEVERIFY = 1 << 10
    WITNESS = 1 << 11
    DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM = 1 << 12
    MINIMALIF = 1 << 13
    NULLFAIL = 1 << 14
    WITNESS_PUBKEYTYPE = 1 << 15
    CONST_SCRIPTCODE = 1 << 16


# The flags every block on this chain is checked with (all soft forks are active
# from height 1 on regtest), and Core's split of mempool policy into the
# mandatory part (a failure is "mandatory-script-verify-flag-failed") and the
# rest ("non-mandatory-script-verify-flag").
CONSENSUS_FLAGS = (
    Flag.P2SH | Flag.DERSIG | Flag.NULLDUMMY | Flag.CHECKLOCKTIMEVERIFY | Flag.CHECKSEQUENCEVERIFY | Flag.WITNESS
)
MANDATORY_FLAGS = CONSENSUS_FLAGS
STANDARD_FLAGS = (
    MANDATORY_FLAGS
    | Flag.STRICTENC
    | Flag.MINIMALDATA
    | Flag.DISCOURAGE_UPGRADABLE_NOPS
    | Flag.CLEANSTACK
    | Flag.MINIMALIF
    | Flag.NULLFAIL
    | Flag.LOW_S
    | Flag.DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM
    | Flag.WITNESS_PUBKEYTYPE
    | Flag.CONST_SCRIPTCODE
)


class ScriptErr(Enum):
    """Core's ScriptError values with their ``ScriptErrorString`` text."""

    EVAL_FALSE = "Script evaluated without error but finished with a false/empty top stack element"
    VERIFY = "Script failed an OP_VERIFY operation"
    EQUALVERIFY = "Script failed an OP_EQUALVERIFY operation"
    CHECKMULTISIGVERIFY = "Script failed an OP_CHECKMULTISIGVERIFY operation"
    CHECKSIGVERIFY = "Script failed an OP_CHECKSIGVERIFY operation"
    NUMEQUALVERIFY = "Script failed an OP_NUMEQUALVERIFY operation"
    SCRIPT_SIZE = "Script is too big"
    PUSH_SIZE = "Push value size limit exceeded"
    OP_COUNT = "Operation limit exceeded"
    STACK_SIZE = "Stack size limit exceeded"
    SIG_COUNT = "Signature count negative or greater than pubkey count"
    PUBKEY_COUNT = "Pubkey count negative or limit exceeded"
    BAD_OPCODE = "Opcode missing or not understood"
    DISABLED_OPCODE = "Attempted to use a disabled opcode"
    INVALID_STACK_OPERATION = "Operation not valid with the current stack size"
    INVALID_ALTSTACK_OPERATION = "Operation not valid with the current altstack size"
    OP_RETURN = "OP_RETURN was encountered"
    UNBALANCED_CONDITIONAL = "Invalid OP_IF construction"
    NEGATIVE_LOCKTIME = "Negative locktime"
    UNSATISFIED_LOCKTIME = "Locktime requirement not satisfied"
    SIG_HASHTYPE = "Signature hash type missing or not understood"
    SIG_DER = "Non-canonical DER signature"
    MINIMALDATA = "Data push larger than necessary"
    SIG_PUSHONLY = "Only push operators allowed in signatures"
    SIG_HIGH_S = "Non-canonical signature: S value is unnecessarily high"
    SIG_NULLDUMMY = "Dummy CHECKMULTISIG argument must be zero"
    MINIMALIF = "OP_IF/NOTIF argument must be minimal"
    SIG_NULLFAIL = "Signature must be zero for failed CHECK(MULTI)SIG operation"
    DISCOURAGE_UPGRADABLE_NOPS = "NOPx reserved for soft-fork upgrades"
    DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM = "Witness version reserved for soft-fork upgrades"
    PUBKEYTYPE = "Public key is neither compressed or uncompressed"
    CLEANSTACK = "Stack size must be exactly one after execution"
    WITNESS_PROGRAM_WRONG_LENGTH = "Witness program has incorrect length"
    WITNESS_PROGRAM_WITNESS_EMPTY = "Witness program was passed an empty witness"
    WITNESS_PROGRAM_MISMATCH = "Witness program hash mismatch"
    WITNESS_MALLEATED = "Witness requires empty scriptSig"
    WITNESS_MALLEATED_P2SH = "Witness requires only-redeemscript scriptSig"
    WITNESS_UNEXPECTED = "Witness provided for non-witness script"
    WITNESS_PUBKEYTYPE = "Using non-compressed keys in segwit"
    OP_CODESEPARATOR = "Using OP_CODESEPARATOR in non-witness script"
    SIG_FINDANDDELETE = "Signature is found in scriptCode"
    UNSUPPORTED = "Taproot spends are not implemented by this regtest stand-in"
    UNKNOWN_ERROR = "unknown error"


class ScriptError(Exception):
    def __init__(self, err: ScriptErr) -> None:
        super().__init__(err.value)
        self.err = err


class _NumError(Exception):
    """Core's scriptnum_error: surfaces as SCRIPT_ERR_UNKNOWN_ERROR."""


# --- parsing and building --------------------------------------------------------------------


def iter_ops(script: bytes) -> Iterator[tuple[int, bytes | None, int]]:
    """(opcode, pushed data or None, offset after the op). Raises ValueError on a
    push running past the end (Core's GetOp failing)."""
    pc = 0
    n = len(script)
    while pc < n:
        op = script[pc]
        pc += 1
        data: bytes | None = None
        if op <= OP_PUSHDATA4:
            if op < OP_PUSHDATA1:
                size = op
            elif op == OP_PUSHDATA1:
                if pc + 1 > n:
                    raise ValueError("truncated push")
                size = script[pc]
                pc += 1
            elif op == OP_PUSHDATA2:
                if pc + 2 > n:
                    raise ValueError("truncated push")
                size = int.from_bytes(script[pc : pc + 2], "little")
                pc += 2
            else:
                if pc + 4 > n:
                    raise ValueError("truncated push")
                size = int.from_bytes(script[pc : pc + 4], "little")
                pc += 4
            if pc + size > n:
                raise ValueError("truncated push")
            data = script[pc : pc + size]
            pc += size
        yield op, data, pc


def push_data(data: bytes) -> bytes:
    """The minimal push of ``data`` as data (never turned into OP_n)."""
    n = len(data)
    if n < OP_PUSHDATA1:
        return bytes((n,)) + data
    if n <= 0xFF:
        return bytes((OP_PUSHDATA1, n)) + data
    if n <= 0xFFFF:
        return bytes((OP_PUSHDATA2,)) + struct.pack("<H", n) + data
    return bytes((OP_PUSHDATA4,)) + struct.pack("<I", n) + data


def num_encode(n: int) -> bytes:
    """CScriptNum serialization: little-endian magnitude, sign in the top bit."""
    if n == 0:
        return b""
    neg = n < 0
    a = -n if neg else n
    out = bytearray()
    while a:
        out.append(a & 0xFF)
        a >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0x00)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def num_decode(vch: bytes, require_minimal: bool, max_size: int = 4) -> int:
    if len(vch) > max_size:
        raise _NumError("script number overflow")
    if require_minimal and vch and (vch[-1] & 0x7F) == 0 and (len(vch) <= 1 or (vch[-2] & 0x80) == 0):
        raise _NumError("non-minimally encoded script number")
    if not vch:
        return 0
    value = int.from_bytes(vch, "little")
    if vch[-1] & 0x80:
        return -(value & ~(0x80 << (8 * (len(vch) - 1))))
    return value


def push_int(n: int) -> bytes:
    """``CScript() << n``: OP_0, OP_1NEGATE, OP_1..OP_16, or a minimal number push."""
    if n == 0:
        return bytes((OP_0,))
    if n == -1:
        return bytes((OP_1NEGATE,))
    if 1 <= n <= 16:
        return bytes((OP_1 + n - 1,))
    return push_data(num_encode(n))


def cast_to_bool(vch: bytes) -> bool:
    for i, b in enumerate(vch):
        if b:
            # Negative zero (0x80 as the last byte, zeros before) is false.
            return not (i == len(vch) - 1 and b == 0x80)
    return False


def is_push_only(script: bytes) -> bool:
    try:
        return all(op <= OP_16 for op, _, _ in iter_ops(script))
    except ValueError:
        return False


def check_minimal_push(data: bytes, op: int) -> bool:
    n = len(data)
    if n == 0:
        return op == OP_0
    if n == 1 and 1 <= data[0] <= 16:
        return op == OP_1 + data[0] - 1
    if n == 1 and data[0] == 0x81:
        return op == OP_1NEGATE
    if n <= 75:
        return op == n
    if n <= 255:
        return op == OP_PUSHDATA1
    if n <= 65535:
        return op == OP_PUSHDATA2
    return True


def find_and_delete(script: bytes, pattern: bytes) -> tuple[bytes, int]:
    """Core's FindAndDelete: drop ``pattern`` wherever it starts at an opcode boundary."""
    if not pattern:
        return script, 0
    out = bytearray()
    found = 0
    pc = 0
    kept_from = 0
    end = len(script)
    while True:
        out += script[kept_from:pc]
        while end - pc >= len(pattern) and script[pc : pc + len(pattern)] == pattern:
            pc += len(pattern)
            found += 1
        kept_from = pc
        if pc >= end:
            break
        try:
            _, _, pc = _step(script, pc)
        except ValueError:
            break
    if not found:
        return script, 0
    out += script[kept_from:]
    return bytes(out), found


def _step(script: bytes, pc: int) -> tuple[int, bytes | None, int]:
    op, data, after = next(iter_ops(script[pc:]))
    return op, data, pc + after


def strip_codeseparators(script: bytes) -> bytes:
    """The script as the legacy sighash serializes it: OP_CODESEPARATORs removed."""
    out = bytearray()
    last = 0
    pc = 0
    try:
        for op, _, after in iter_ops(script):
            if op == OP_CODESEPARATOR:
                out += script[last:pc]
                last = after
            pc = after
    except ValueError:
        pass
    out += script[last:]
    return bytes(out)


# --- signature encodings ---------------------------------------------------------------------


def is_valid_signature_encoding(sig: bytes) -> bool:
    """BIP66 strict DER, with the trailing hash type byte."""
    n = len(sig)
    if n < 9 or n > 73:
        return False
    if sig[0] != 0x30 or sig[1] != n - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= n:
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 7 != n:
        return False
    if sig[2] != 0x02 or len_r == 0 or sig[4] & 0x80:
        return False
    if len_r > 1 and sig[4] == 0x00 and not sig[5] & 0x80:
        return False
    if sig[len_r + 4] != 0x02 or len_s == 0 or sig[len_r + 6] & 0x80:
        return False
    if len_s > 1 and sig[len_r + 6] == 0x00 and not sig[len_r + 7] & 0x80:
        return False
    return True


def _der_rs(der: bytes) -> tuple[int, int]:
    len_r = der[3]
    r = int.from_bytes(der[4 : 4 + len_r], "big")
    len_s = der[5 + len_r]
    s = int.from_bytes(der[6 + len_r : 6 + len_r + len_s], "big")
    return r, s


def _der_int(x: int) -> bytes:
    b = x.to_bytes(max(1, (x.bit_length() + 7) // 8), "big")
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes((len(b),)) + b


def der_encode(r: int, s: int) -> bytes:
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes((len(body),)) + body


def is_low_s(sig_without_hashtype: bytes) -> bool:
    _, s = _der_rs(sig_without_hashtype)
    return s <= _SECP256K1_N // 2


def is_compressed_or_uncompressed_pubkey(pubkey: bytes) -> bool:
    if len(pubkey) == 33:
        return pubkey[0] in (2, 3)
    if len(pubkey) == 65:
        return pubkey[0] == 4
    return False


def is_compressed_pubkey(pubkey: bytes) -> bool:
    return len(pubkey) == 33 and pubkey[0] in (2, 3)


def _check_signature_encoding(sig: bytes, flags: int) -> None:
    if not sig:
        return
    if flags & (Flag.DERSIG | Flag.LOW_S | Flag.STRICTENC) and not is_valid_signature_encoding(sig):
        raise ScriptError(ScriptErr.SIG_DER)
    if flags & Flag.LOW_S and not is_low_s(sig[:-1]):
        raise ScriptError(ScriptErr.SIG_HIGH_S)
    if flags & Flag.STRICTENC and not SIGHASH_ALL <= sig[-1] & ~SIGHASH_ANYONECANPAY <= SIGHASH_SINGLE:
        raise ScriptError(ScriptErr.SIG_HASHTYPE)


def _check_pubkey_encoding(pubkey: bytes, flags: int, sigversion: SigVersion) -> None:
    if flags & Flag.STRICTENC and not is_compressed_or_uncompressed_pubkey(pubkey):
        raise ScriptError(ScriptErr.PUBKEYTYPE)
    if flags & Flag.WITNESS_PUBKEYTYPE and sigversion is SigVersion.WITNESS_V0 and not is_compressed_pubkey(pubkey):
        raise ScriptError(ScriptErr.WITNESS_PUBKEYTYPE)


def ecdsa_verify(pubkey: bytes, der_sig: bytes, msg32: bytes) -> bool:
    """Core's CPubKey::Verify: any well-formed key, S normalised before verifying
    (low S is policy, not consensus)."""
    if not pubkey or pubkey[0] not in (2, 3, 4, 6, 7):
        return False
    try:
        key = PublicKey(pubkey)
    except ValueError:
        return False
    if not is_valid_signature_encoding(der_sig + b"\x01"):
        return False
    r, s = _der_rs(der_sig)
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        return False
    if s > _SECP256K1_N // 2:
        s = _SECP256K1_N - s
    try:
        return bool(key.verify(der_encode(r, s), msg32, hasher=None))
    except (ValueError, TypeError):
        return False


# --- signature hashes --------------------------------------------------------------------------


class PrecomputedTxData:
    """BIP143's three shared midstates, computed once per transaction."""

    __slots__ = ("hash_outputs", "hash_prevouts", "hash_sequence")

    def __init__(self, tx: Transaction) -> None:
        self.hash_prevouts = sha256d(b"".join(i.prevout.serialize() for i in tx.vin))
        self.hash_sequence = sha256d(b"".join(struct.pack("<I", i.sequence) for i in tx.vin))
        self.hash_outputs = sha256d(b"".join(o.serialize() for o in tx.vout))


def legacy_sighash(tx: Transaction, n_in: int, script_code: bytes, hash_type: int) -> bytes:
    """The original signature hash (SIGVERSION_BASE), with Core's two quirks:
    an input index out of range, or SIGHASH_SINGLE without a matching output,
    signs the number one."""
    if n_in >= len(tx.vin):
        return _UINT256_ONE
    base = hash_type & 0x1F
    if base == SIGHASH_SINGLE and n_in >= len(tx.vout):
        return _UINT256_ONE
    anyone = bool(hash_type & SIGHASH_ANYONECANPAY)
    code = strip_codeseparators(script_code)
    parts = [struct.pack("<i", tx.version)]
    inputs = [n_in] if anyone else list(range(len(tx.vin)))
    parts.append(ser_compact_size(len(inputs)))
    for i in inputs:
        txin = tx.vin[i]
        parts.append(txin.prevout.serialize())
        parts.append(ser_bytes(code) if i == n_in else b"\x00")
        if i != n_in and base in (SIGHASH_NONE, SIGHASH_SINGLE):
            parts.append(b"\x00\x00\x00\x00")
        else:
            parts.append(struct.pack("<I", txin.sequence))
    if base == SIGHASH_NONE:
        parts.append(b"\x00")
    elif base == SIGHASH_SINGLE:
        parts.append(ser_compact_size(n_in + 1))
        parts.extend(TxOut(-1, b"").serialize() for _ in range(n_in))
        parts.append(tx.vout[n_in].serialize())
    else:
        parts.append(ser_compact_size(len(tx.vout)))
        parts.extend(o.serialize() for o in tx.vout)
    parts.append(struct.pack("<I", tx.locktime))
    parts.append(struct.pack("<i", hash_type))
    return sha256d(b"".join(parts))


def segwit_v0_sighash(
    tx: Transaction,
    n_in: int,
    script_code: bytes,
    amount: int,
    hash_type: int,
    cache: PrecomputedTxData | None = None,
) -> bytes:
    """The BIP143 signature hash."""
    cache = cache or PrecomputedTxData(tx)
    zero = b"\x00" * 32
    base = hash_type & 0x1F
    anyone = bool(hash_type & SIGHASH_ANYONECANPAY)
    hash_prevouts = zero if anyone else cache.hash_prevouts
    hash_sequence = zero if anyone or base in (SIGHASH_SINGLE, SIGHASH_NONE) else cache.hash_sequence
    if base not in (SIGHASH_SINGLE, SIGHASH_NONE):
        hash_outputs = cache.hash_outputs
    elif base == SIGHASH_SINGLE and n_in < len(tx.vout):
        hash_outputs = sha256d(tx.vout[n_in].serialize())
    else:
        hash_outputs = zero
    txin = tx.vin[n_in]
    preimage = (
        struct.pack("<i", tx.version)
        + hash_prevouts
        + hash_sequence
        + txin.prevout.serialize()
        + ser_bytes(script_code)
        + struct.pack("<q", amount)
        + struct.pack("<I", txin.sequence)
        + hash_outputs
        + struct.pack("<I", tx.locktime)
        + struct.pack("<I", hash_type & 0xFFFFFFFF)
    )
    return sha256d(preimage)


# --- the checker --------------------------------------------------------------------------------


class TxChecker:
    """Checks signatures and lock times for input ``n_in`` of ``tx`` spending ``amount``."""

    __slots__ = ("amount", "cache", "n_in", "tx")

    def __init__(self, tx: Transaction, n_in: int, amount: int, cache: PrecomputedTxData | None = None) -> None:
        self.tx = tx
        self.n_in = n_in
        self.amount = amount
        self.cache = cache

    def check_ecdsa(self, sig: bytes, pubkey: bytes, script_code: bytes, sigversion: SigVersion) -> bool:
        if not sig:
            return False
        hash_type = sig[-1]
        if sigversion is SigVersion.WITNESS_V0:
            if self.cache is None:
                self.cache = PrecomputedTxData(self.tx)
            digest = segwit_v0_sighash(self.tx, self.n_in, script_code, self.amount, hash_type, self.cache)
        else:
            digest = legacy_sighash(self.tx, self.n_in, script_code, hash_type)
        return ecdsa_verify(pubkey, sig[:-1], digest)

    def check_locktime(self, locktime: int) -> bool:
        tx_lock = self.tx.locktime
        if (tx_lock < LOCKTIME_THRESHOLD) != (locktime < LOCKTIME_THRESHOLD):
            return False
        if locktime > tx_lock:
            return False
        return self.tx.vin[self.n_in].sequence != SEQUENCE_FINAL

    def check_sequence(self, sequence: int) -> bool:
        tx_seq = self.tx.vin[self.n_in].sequence
        # The version compares unsigned, as in Core: a "negative" version is >= 2.
        if (self.tx.version & 0xFFFFFFFF) < 2:
            return False
        if tx_seq & SEQUENCE_LOCKTIME_DISABLE_FLAG:
            return False
        mask = SEQUENCE_LOCKTIME_TYPE_FLAG | SEQUENCE_LOCKTIME_MASK
        tx_masked = tx_seq & mask
        want = sequence & mask
        if (tx_masked < SEQUENCE_LOCKTIME_TYPE_FLAG) != (want < SEQUENCE_LOCKTIME_TYPE_FLAG):
            return False
        return want <= tx_masked


# --- the interpreter --------------------------------------------------------------------------


def _hash_op(op: int, data: bytes) -> bytes:
    if op == OP_RIPEMD160:
        return ripemd160(data)
    if op == OP_SHA1:
        return hashlib.sha1(data).digest()
    if op == OP_SHA256:
        return sha256(data)
    if op == OP_HASH160:
        return hash160(data)
    return sha256d(data)


def eval_script(
    stack: list[bytes], script: bytes, flags: int, checker: TxChecker | None, sigversion: SigVersion
) -> None:
    """Run ``script`` over ``stack`` (changed in place); ScriptError on failure."""
    try:
        _eval(stack, script, flags, checker, sigversion)
    except _NumError:
        raise ScriptError(ScriptErr.UNKNOWN_ERROR) from None


def _eval(stack: list[bytes], script: bytes, flags: int, checker: TxChecker | None, sigversion: SigVersion) -> None:
    if len(script) > MAX_SCRIPT_SIZE:
        raise ScriptError(ScriptErr.SCRIPT_SIZE)
    minimal = bool(flags & Flag.MINIMALDATA)
    altstack: list[bytes] = []
    vf_exec: list[bool] = []
    op_count = 0
    begin_code = 0
    pc = 0
    end = len(script)

    def need(n: int) -> None:
        if len(stack) < n:
            raise ScriptError(ScriptErr.INVALID_STACK_OPERATION)

    def num(vch: bytes, size: int = 4) -> int:
        return num_decode(vch, minimal, size)

    def push_bool(v: bool) -> None:
        stack.append(b"\x01" if v else b"")

    while pc < end:
        executing = all(vf_exec)
        try:
            op, data, pc = _step(script, pc)
        except ValueError:
            raise ScriptError(ScriptErr.BAD_OPCODE) from None
        if data is not None and len(data) > MAX_SCRIPT_ELEMENT_SIZE:
            raise ScriptError(ScriptErr.PUSH_SIZE)
        if op > OP_16:
            op_count += 1
            if op_count > MAX_OPS_PER_SCRIPT:
                raise ScriptError(ScriptErr.OP_COUNT)
        if op in _DISABLED:
            raise ScriptError(ScriptErr.DISABLED_OPCODE)
        if op == OP_CODESEPARATOR and sigversion is SigVersion.BASE and flags & Flag.CONST_SCRIPTCODE:
            raise ScriptError(ScriptErr.OP_CODESEPARATOR)

        if executing and data is not None:
            if minimal and not check_minimal_push(data, op):
                raise ScriptError(ScriptErr.MINIMALDATA)
            stack.append(data)
        elif executing or OP_IF <= op <= OP_ENDIF:
            if op == OP_1NEGATE or OP_1 <= op <= OP_16:
                stack.append(num_encode(op - (OP_1 - 1)))
            elif op == OP_NOP:
                pass
            elif op == OP_CHECKLOCKTIMEVERIFY:
                if not flags & Flag.CHECKLOCKTIMEVERIFY:
                    if flags & Flag.DISCOURAGE_UPGRADABLE_NOPS:
                        raise ScriptError(ScriptErr.DISCOURAGE_UPGRADABLE_NOPS)
                else:
                    need(1)
                    locktime = num(stack[-1], 5)
                    if locktime < 0:
                        raise ScriptError(ScriptErr.NEGATIVE_LOCKTIME)
                    if checker is None or not checker.check_locktime(locktime):
                        raise ScriptError(ScriptErr.UNSATISFIED_LOCKTIME)
            elif op == OP_CHECKSEQUENCEVERIFY:
                if not flags & Flag.CHECKSEQUENCEVERIFY:
                    if flags & Flag.DISCOURAGE_UPGRADABLE_NOPS:
                        raise ScriptError(ScriptErr.DISCOURAGE_UPGRADABLE_NOPS)
                else:
                    need(1)
                    sequence = num(stack[-1], 5)
                    if sequence < 0:
                        raise ScriptError(ScriptErr.NEGATIVE_LOCKTIME)
                    # With the disable flag set the operand is a NOP (BIP112).
                    if not sequence & SEQUENCE_LOCKTIME_DISABLE_FLAG and (
                        checker is None or not checker.check_sequence(sequence)
                    ):
                        raise ScriptError(ScriptErr.UNSATISFIED_LOCKTIME)
            elif op == OP_NOP1 or OP_NOP4 <= op <= OP_NOP10:
                if flags & Flag.DISCOURAGE_UPGRADABLE_NOPS:
                    raise ScriptError(ScriptErr.DISCOURAGE_UPGRADABLE_NOPS)
            elif op in (OP_IF, OP_NOTIF):
                value = False
                if executing:
                    if not stack:
                        raise ScriptError(ScriptErr.UNBALANCED_CONDITIONAL)
                    top = stack[-1]
                    minimal_if = sigversion is SigVersion.WITNESS_V0 and flags & Flag.MINIMALIF
                    if minimal_if and (len(top) > 1 or (len(top) == 1 and top[0] != 1)):
                        raise ScriptError(ScriptErr.MINIMALIF)
                    value = cast_to_bool(top)
                    if op == OP_NOTIF:
                        value = not value
                    stack.pop()
                vf_exec.append(value)
            elif op == OP_ELSE:
                if not vf_exec:
                    raise ScriptError(ScriptErr.UNBALANCED_CONDITIONAL)
                vf_exec[-1] = not vf_exec[-1]
            elif op == OP_ENDIF:
                if not vf_exec:
                    raise ScriptError(ScriptErr.UNBALANCED_CONDITIONAL)
                vf_exec.pop()
            elif op == OP_VERIFY:
                need(1)
                if not cast_to_bool(stack[-1]):
                    raise ScriptError(ScriptErr.VERIFY)
                stack.pop()
            elif op == OP_RETURN:
                raise ScriptError(ScriptErr.OP_RETURN)
            elif op == OP_TOALTSTACK:
                need(1)
                altstack.append(stack.pop())
            elif op == OP_FROMALTSTACK:
                if not altstack:
                    raise ScriptError(ScriptErr.INVALID_ALTSTACK_OPERATION)
                stack.append(altstack.pop())
            elif op == OP_2DROP:
                need(2)
                del stack[-2:]
            elif op == OP_2DUP:
                need(2)
                stack.extend(stack[-2:])
            elif op == OP_3DUP:
                need(3)
                stack.extend(stack[-3:])
            elif op == OP_2OVER:
                need(4)
                stack.extend(stack[-4:-2])
            elif op == OP_2ROT:
                need(6)
                moved = stack[-6:-4]
                del stack[-6:-4]
                stack.extend(moved)
            elif op == OP_2SWAP:
                need(4)
                stack[-4:] = stack[-2:] + stack[-4:-2]
            elif op == OP_IFDUP:
                need(1)
                if cast_to_bool(stack[-1]):
                    stack.append(stack[-1])
            elif op == OP_DEPTH:
                stack.append(num_encode(len(stack)))
            elif op == OP_DROP:
                need(1)
                stack.pop()
            elif op == OP_DUP:
                need(1)
                stack.append(stack[-1])
            elif op == OP_NIP:
                need(2)
                del stack[-2]
            elif op == OP_OVER:
                need(2)
                stack.append(stack[-2])
            elif op in (OP_PICK, OP_ROLL):
                need(2)
                n = num(stack[-1])
                stack.pop()
                if n < 0 or n >= len(stack):
                    raise ScriptError(ScriptErr.INVALID_STACK_OPERATION)
                item = stack[-n - 1]
                if op == OP_ROLL:
                    del stack[-n - 1]
                stack.append(item)
            elif op == OP_ROT:
                need(3)
                stack[-3:] = [stack[-2], stack[-1], stack[-3]]
            elif op == OP_SWAP:
                need(2)
                stack[-2], stack[-1] = stack[-1], stack[-2]
            elif op == OP_TUCK:
                need(2)
                stack.insert(-2, stack[-1])
            elif op == OP_SIZE:
                need(1)
                stack.append(num_encode(len(stack[-1])))
            elif op in (OP_EQUAL, OP_EQUALVERIFY):
                need(2)
                equal = stack[-2] == stack[-1]
                del stack[-2:]
                push_bool(equal)
                if op == OP_EQUALVERIFY:
                    if not equal:
                        raise ScriptError(ScriptErr.EQUALVERIFY)
                    stack.pop()
            elif op in (OP_1ADD, OP_1SUB, OP_NEGATE, OP_ABS, OP_NOT, OP_0NOTEQUAL):
                need(1)
                a = num(stack[-1])
                if op == OP_1ADD:
                    r = a + 1
                elif op == OP_1SUB:
                    r = a - 1
                elif op == OP_NEGATE:
                    r = -a
                elif op == OP_ABS:
                    r = abs(a)
                elif op == OP_NOT:
                    r = int(a == 0)
                else:
                    r = int(a != 0)
                stack[-1] = num_encode(r)
            elif OP_ADD <= op <= OP_MAX and op not in _DISABLED:
                need(2)
                a = num(stack[-2])
                b = num(stack[-1])
                results = {
                    OP_ADD: a + b,
                    OP_SUB: a - b,
                    OP_BOOLAND: int(a != 0 and b != 0),
                    OP_BOOLOR: int(a != 0 or b != 0),
                    OP_NUMEQUAL: int(a == b),
                    OP_NUMEQUALVERIFY: int(a == b),
                    OP_NUMNOTEQUAL: int(a != b),
                    OP_LESSTHAN: int(a < b),
                    OP_GREATERTHAN: int(a > b),
                    OP_LESSTHANOREQUAL: int(a <= b),
                    OP_GREATERTHANOREQUAL: int(a >= b),
                    OP_MIN: min(a, b),
                    OP_MAX: max(a, b),
                }
                del stack[-2:]
                stack.append(num_encode(results[op]))
                if op == OP_NUMEQUALVERIFY:
                    if not cast_to_bool(stack[-1]):
                        raise ScriptError(ScriptErr.NUMEQUALVERIFY)
                    stack.pop()
            elif op == OP_WITHIN:
                need(3)
                x, lo, hi = num(stack[-3]), num(stack[-2]), num(stack[-1])
                del stack[-3:]
                push_bool(lo <= x < hi)
            elif OP_RIPEMD160 <= op <= OP_HASH256:
                need(1)
                stack[-1] = _hash_op(op, stack[-1])
            elif op == OP_CODESEPARATOR:
                begin_code = pc
            elif op in (OP_CHECKSIG, OP_CHECKSIGVERIFY):
                need(2)
                sig, pubkey = stack[-2], stack[-1]
                script_code = script[begin_code:]
                if sigversion is SigVersion.BASE:
                    script_code, found = find_and_delete(script_code, push_data(sig))
                    if found and flags & Flag.CONST_SCRIPTCODE:
                        raise ScriptError(ScriptErr.SIG_FINDANDDELETE)
                _check_signature_encoding(sig, flags)
                _check_pubkey_encoding(pubkey, flags, sigversion)
                ok = checker is not None and checker.check_ecdsa(sig, pubkey, script_code, sigversion)
                if not ok and flags & Flag.NULLFAIL and sig:
                    raise ScriptError(ScriptErr.SIG_NULLFAIL)
                del stack[-2:]
                push_bool(ok)
                if op == OP_CHECKSIGVERIFY:
                    if not ok:
                        raise ScriptError(ScriptErr.CHECKSIGVERIFY)
                    stack.pop()
            elif op in (OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY):
                ok, op_count = _checkmultisig(stack, script[begin_code:], flags, checker, sigversion, op_count)
                if op == OP_CHECKMULTISIGVERIFY:
                    if not ok:
                        raise ScriptError(ScriptErr.CHECKMULTISIGVERIFY)
                    stack.pop()
            else:
                raise ScriptError(ScriptErr.BAD_OPCODE)
        if len(stack) + len(altstack) > MAX_STACK_SIZE:
            raise ScriptError(ScriptErr.STACK_SIZE)
    if vf_exec:
        raise ScriptError(ScriptErr.UNBALANCED_CONDITIONAL)


def _checkmultisig(
    stack: list[bytes],
    script_code: bytes,
    flags: int,
    checker: TxChecker | None,
    sigversion: SigVersion,
    op_count: int,
) -> tuple[bool, int]:
    """CHECKMULTISIG as Core walks it: signatures and keys in order, each key
    tried once; the result is pushed onto ``stack``."""
    minimal = bool(flags & Flag.MINIMALDATA)
    i = 1
    if len(stack) < i:
        raise ScriptError(ScriptErr.INVALID_STACK_OPERATION)
    n_keys = num_decode(stack[-i], minimal)
    if n_keys < 0 or n_keys > MAX_PUBKEYS_PER_MULTISIG:
        raise ScriptError(ScriptErr.PUBKEY_COUNT)
    op_count += n_keys
    if op_count > MAX_OPS_PER_SCRIPT:
        raise ScriptError(ScriptErr.OP_COUNT)
    ikey = i + 1
    # Items above the signatures (n, the keys, m): popped before NULLFAIL looks.
    ikey2 = n_keys + 2
    i += n_keys + 1
    if len(stack) < i:
        raise ScriptError(ScriptErr.INVALID_STACK_OPERATION)
    n_sigs = num_decode(stack[-i], minimal)
    if n_sigs < 0 or n_sigs > n_keys:
        raise ScriptError(ScriptErr.SIG_COUNT)
    isig = i + 1
    i += n_sigs + 1
    if len(stack) < i:
        raise ScriptError(ScriptErr.INVALID_STACK_OPERATION)

    if sigversion is SigVersion.BASE:
        for k in range(n_sigs):
            script_code, found = find_and_delete(script_code, push_data(stack[-isig - k]))
            if found and flags & Flag.CONST_SCRIPTCODE:
                raise ScriptError(ScriptErr.SIG_FINDANDDELETE)

    success = True
    while success and n_sigs > 0:
        sig = stack[-isig]
        pubkey = stack[-ikey]
        _check_signature_encoding(sig, flags)
        _check_pubkey_encoding(pubkey, flags, sigversion)
        ok = checker is not None and checker.check_ecdsa(sig, pubkey, script_code, sigversion)
        if ok:
            isig += 1
            n_sigs -= 1
        ikey += 1
        n_keys -= 1
        if n_sigs > n_keys:
            success = False

    # Pop everything but the dummy; after a failure every signature must be empty.
    for _ in range(i - 1):
        if not success and flags & Flag.NULLFAIL and ikey2 == 0 and stack[-1]:
            raise ScriptError(ScriptErr.SIG_NULLFAIL)
        if ikey2 > 0:
            ikey2 -= 1
        stack.pop()
    if len(stack) < 1:
        raise ScriptError(ScriptErr.INVALID_STACK_OPERATION)
    if flags & Flag.NULLDUMMY and stack[-1]:
        raise ScriptError(ScriptErr.SIG_NULLDUMMY)
    stack.pop()
    stack.append(b"\x01" if success else b"")
    return success, op_count


# --- verification -----------------------------------------------------------------------------


def _witness_v0(program: bytes, witness: tuple[bytes, ...], flags: int, checker: TxChecker | None) -> None:
    if len(program) == 32:
        if not witness:
            raise ScriptError(ScriptErr.WITNESS_PROGRAM_WITNESS_EMPTY)
        script = witness[-1]
        stack = list(witness[:-1])
        if sha256(script) != program:
            raise ScriptError(ScriptErr.WITNESS_PROGRAM_MISMATCH)
    elif len(program) == 20:
        if len(witness) != 2:
            raise ScriptError(ScriptErr.WITNESS_PROGRAM_MISMATCH)
        script = b"\x76\xa9\x14" + program + b"\x88\xac"
        stack = list(witness)
    else:
        raise ScriptError(ScriptErr.WITNESS_PROGRAM_WRONG_LENGTH)
    if any(len(item) > MAX_SCRIPT_ELEMENT_SIZE for item in stack):
        raise ScriptError(ScriptErr.PUSH_SIZE)
    eval_script(stack, script, flags, checker, SigVersion.WITNESS_V0)
    # Witness scripts carry an implicit clean stack rule (consensus).
    if len(stack) != 1:
        raise ScriptError(ScriptErr.CLEANSTACK)
    if not cast_to_bool(stack[-1]):
        raise ScriptError(ScriptErr.EVAL_FALSE)


def _verify_witness_program(
    version: int, program: bytes, witness: tuple[bytes, ...], flags: int, checker: TxChecker | None, is_p2sh: bool
) -> None:
    if version == 0:
        _witness_v0(program, witness, flags, checker)
    elif version == 1 and len(program) == 32 and not is_p2sh:
        raise ScriptError(ScriptErr.UNSUPPORTED)
    elif flags & Flag.DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM:
        raise ScriptError(ScriptErr.DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM)
    # Unknown witness versions are anyone-can-spend under consensus.


def _witness_program(script: bytes) -> tuple[int, bytes] | None:
    if not 4 <= len(script) <= 42:
        return None
    op = script[0]
    if op != OP_0 and not OP_1 <= op <= OP_16:
        return None
    if script[1] + 2 != len(script):
        return None
    return (0 if op == OP_0 else op - OP_1 + 1), script[2:]


def is_p2sh(script: bytes) -> bool:
    return len(script) == 23 and script[0] == OP_HASH160 and script[1] == 0x14 and script[22] == OP_EQUAL


def verify_script(
    script_sig: bytes, script_pubkey: bytes, witness: tuple[bytes, ...], flags: int, checker: TxChecker | None
) -> None:
    """Core's VerifyScript; raises ScriptError with the reason on failure."""
    if flags & Flag.SIGPUSHONLY and not is_push_only(script_sig):
        raise ScriptError(ScriptErr.SIG_PUSHONLY)
    stack: list[bytes] = []
    eval_script(stack, script_sig, flags, checker, SigVersion.BASE)
    stack_copy = list(stack) if flags & Flag.P2SH else []
    eval_script(stack, script_pubkey, flags, checker, SigVersion.BASE)
    if not stack or not cast_to_bool(stack[-1]):
        raise ScriptError(ScriptErr.EVAL_FALSE)

    had_witness = False
    if flags & Flag.WITNESS:
        wp = _witness_program(script_pubkey)
        if wp is not None:
            had_witness = True
            if script_sig:
                raise ScriptError(ScriptErr.WITNESS_MALLEATED)
            _verify_witness_program(wp[0], wp[1], witness, flags, checker, is_p2sh=False)
            stack = stack[:1]

    if flags & Flag.P2SH and is_p2sh(script_pubkey):
        if not is_push_only(script_sig):
            raise ScriptError(ScriptErr.SIG_PUSHONLY)
        stack = stack_copy
        if not stack:
            raise ScriptError(ScriptErr.EVAL_FALSE)
        redeem = stack.pop()
        eval_script(stack, redeem, flags, checker, SigVersion.BASE)
        if not stack or not cast_to_bool(stack[-1]):
            raise ScriptError(ScriptErr.EVAL_FALSE)
        if flags & Flag.WITNESS:
            wp = _witness_program(redeem)
            if wp is not None:
                had_witness = True
                if script_sig != push_data(redeem):
                    raise ScriptError(ScriptErr.WITNESS_MALLEATED_P2SH)
                _verify_witness_program(wp[0], wp[1], witness, flags, checker, is_p2sh=True)
                stack = stack[:1]

    if flags & Flag.CLEANSTACK and len(stack) != 1:
        raise ScriptError(ScriptErr.CLEANSTACK)
    if flags & Flag.WITNESS and not had_witness and witness:
        raise ScriptError(ScriptErr.WITNESS_UNEXPECTED)


# --- classification (Core's Solver) -------------------------------------------------------------


class TxoutType(Enum):
    NONSTANDARD = "nonstandard"
    PUBKEY = "pubkey"
    PUBKEYHASH = "pubkeyhash"
    SCRIPTHASH = "scripthash"
    MULTISIG = "multisig"
    NULL_DATA = "nulldata"
    WITNESS_V0_KEYHASH = "witness_v0_keyhash"
    WITNESS_V0_SCRIPTHASH = "witness_v0_scripthash"
    WITNESS_V1_TAPROOT = "witness_v1_taproot"
    WITNESS_UNKNOWN = "witness_unknown"
    ANCHOR = "anchor"


@dataclass(frozen=True)
class Solution:
    kind: TxoutType
    data: tuple[bytes, ...] = ()  # keys, hashes or program, by kind
    required: int = 0  # multisig m


def _parse_ops(script: bytes) -> list[tuple[int, bytes | None]] | None:
    try:
        return [(op, data) for op, data, _ in iter_ops(script)]
    except ValueError:
        return None


def solve(script: bytes) -> Solution:
    """The standard template a scriptPubKey matches, as Core's Solver."""
    if is_p2sh(script):
        return Solution(TxoutType.SCRIPTHASH, (script[2:22],))
    wp = _witness_program(script)
    if wp is not None:
        version, program = wp
        if version == 0 and len(program) == 20:
            return Solution(TxoutType.WITNESS_V0_KEYHASH, (program,))
        if version == 0 and len(program) == 32:
            return Solution(TxoutType.WITNESS_V0_SCRIPTHASH, (program,))
        if version == 1 and len(program) == 32:
            return Solution(TxoutType.WITNESS_V1_TAPROOT, (program,))
        if version == 1 and program == b"\x4e\x73":
            return Solution(TxoutType.ANCHOR)
        if version != 0:
            return Solution(TxoutType.WITNESS_UNKNOWN, (bytes((version,)), program))
        return Solution(TxoutType.NONSTANDARD)
    if script[:1] == bytes((OP_RETURN,)) and is_push_only(script[1:]):
        return Solution(TxoutType.NULL_DATA)
    ops = _parse_ops(script)
    if ops is None:
        return Solution(TxoutType.NONSTANDARD)
    if len(ops) == 2 and ops[1][0] == OP_CHECKSIG and ops[0][1] is not None:
        key = ops[0][1]
        if (len(key) == 33 and key[0] in (2, 3)) or (len(key) == 65 and key[0] == 4):
            return Solution(TxoutType.PUBKEY, (key,))
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return Solution(TxoutType.PUBKEYHASH, (script[3:23],))
    if len(ops) >= 4 and ops[-1][0] == OP_CHECKMULTISIG:
        m_op, n_op = ops[0][0], ops[-2][0]
        keys = [d for _, d in ops[1:-2]]
        if (
            OP_1 <= m_op <= OP_16
            and OP_1 <= n_op <= OP_16
            and all(k is not None and len(k) in (33, 65) for k in keys)
            and len(keys) == n_op - OP_1 + 1
            and m_op <= n_op
        ):
            return Solution(TxoutType.MULTISIG, tuple(k for k in keys if k is not None), m_op - OP_1 + 1)
    return Solution(TxoutType.NONSTANDARD)


def is_unspendable(script: bytes) -> bool:
    return (len(script) > 0 and script[0] == OP_RETURN) or len(script) > MAX_SCRIPT_SIZE


# --- asm (Core's ScriptToAsmStr) -----------------------------------------------------------------

_SIGHASH_NAMES = {
    SIGHASH_ALL: "ALL",
    SIGHASH_ALL | SIGHASH_ANYONECANPAY: "ALL|ANYONECANPAY",
    SIGHASH_NONE: "NONE",
    SIGHASH_NONE | SIGHASH_ANYONECANPAY: "NONE|ANYONECANPAY",
    SIGHASH_SINGLE: "SINGLE",
    SIGHASH_SINGLE | SIGHASH_ANYONECANPAY: "SINGLE|ANYONECANPAY",
}


def op_name(op: int) -> str:
    if op == OP_0:
        return "0"
    if op == OP_1NEGATE:
        return "-1"
    if OP_1 <= op <= OP_16:
        return str(op - OP_1 + 1)
    return _OP_NAMES.get(op, "OP_UNKNOWN")


def script_to_asm(script: bytes, attempt_sighash_decode: bool = False) -> str:
    words: list[str] = []
    pc = 0
    while pc < len(script):
        try:
            op, data, pc = _step(script, pc)
        except ValueError:
            words.append("[error]")
            break
        if data is None:
            words.append(op_name(op))
        elif len(data) <= 4:
            words.append(str(num_decode(data, False, 4)))
        elif attempt_sighash_decode and not is_unspendable(script):
            suffix = ""
            body = data
            try:
                _check_signature_encoding(data, Flag.STRICTENC)
                if data[-1] in _SIGHASH_NAMES:
                    suffix = "[" + _SIGHASH_NAMES[data[-1]] + "]"
                    body = data[:-1]
            except ScriptError:
                pass
            words.append(body.hex() + suffix)
        else:
            words.append(data.hex())
    return " ".join(words)


# --- descriptors (BIP380 checksum) ---------------------------------------------------------------

_DESC_INPUT_CHARSET = (
    "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ "
)
_DESC_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _desc_polymod(c: int, val: int) -> int:
    c0 = c >> 35
    c = ((c & 0x7FFFFFFFF) << 5) ^ val
    if c0 & 1:
        c ^= 0xF5DEE51989
    if c0 & 2:
        c ^= 0xA9FDCA3312
    if c0 & 4:
        c ^= 0x1BAB10E32D
    if c0 & 8:
        c ^= 0x3706B1677A
    if c0 & 16:
        c ^= 0x644D626FFD
    return c


def descriptor_checksum(desc: str) -> str:
    c = 1
    cls = 0
    clscount = 0
    for ch in desc:
        pos = _DESC_INPUT_CHARSET.find(ch)
        if pos < 0:
            raise ValueError(f"invalid descriptor character {ch!r}")
        c = _desc_polymod(c, pos & 31)
        cls = cls * 3 + (pos >> 5)
        clscount += 1
        if clscount == 3:
            c = _desc_polymod(c, cls)
            cls = 0
            clscount = 0
    if clscount:
        c = _desc_polymod(c, cls)
    for _ in range(8):
        c = _desc_polymod(c, 0)
    c ^= 1
    return "".join(_DESC_CHECKSUM_CHARSET[(c >> (5 * (7 - j))) & 31] for j in range(8))


def with_checksum(desc: str) -> str:
    return desc + "#" + descriptor_checksum(desc)
