"""Addresses to output scripts and back, for the network whose params are passed.

| address form               | scriptPubKey                              | Core type               |
|----------------------------|-------------------------------------------|-------------------------|
| base58, P2PKH prefix       | OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG | pubkeyhash      |
| base58, P2SH prefix        | OP_HASH160 <20> OP_EQUAL                  | scripthash              |
| bech32 v0, 20-byte program | OP_0 <20>                                 | witness_v0_keyhash      |
| bech32 v0, 32-byte program | OP_0 <32>                                 | witness_v0_scripthash   |
| bech32m v1..v16            | OP_n <2..40>                              | witness_v1_taproot / witness_unknown |

Bech32 is BIP173, bech32m BIP350 (version 0 must use bech32, later versions
bech32m); base58check is a 4-byte double-SHA256 checksum.
"""

from __future__ import annotations

from .params import ChainParams
from .primitives import hash160, sha256d

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class AddressError(ValueError):
    """Not an address of this network."""


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc = 0
    bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            return None
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return out


def encode_segwit(hrp: str, version: int, program: bytes) -> str:
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    data = [version] + (_convertbits(program, 8, 5, True) or [])
    values = _hrp_expand(hrp) + data
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data + checksum)


def decode_segwit(hrp: str, addr: str) -> tuple[int, bytes]:
    if any(ord(c) < 33 or ord(c) > 126 for c in addr) or (addr.lower() != addr and addr.upper() != addr):
        raise AddressError("Invalid Bech32 address")
    addr = addr.lower()
    pos = addr.rfind("1")
    if pos < 1 or pos + 7 > len(addr) or len(addr) > 90:
        raise AddressError("Invalid Bech32 address")
    if addr[:pos] != hrp:
        raise AddressError("Invalid or unsupported Segwit (Bech32) or Base58 encoding.")
    try:
        data = [_BECH32_CHARSET.index(c) for c in addr[pos + 1 :]]
    except ValueError:
        raise AddressError("Invalid Bech32 address") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise AddressError("Invalid Bech32 checksum")
    version = data[0]
    program = _convertbits(data[1:-6], 5, 8, False)
    if program is None or not 2 <= len(program) <= 40 or version > 16:
        raise AddressError("Invalid Bech32 address program size")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError("Invalid Bech32 v0 address program size")
    if (version == 0) != (const == _BECH32_CONST):
        raise AddressError("Version 1+ witness address must use Bech32m checksum" if version else "Invalid checksum")
    return version, bytes(program)


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58_ALPHABET[r] + out
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + out


def b58decode(s: str) -> bytes:
    n = 0
    for c in s:
        i = _B58_ALPHABET.find(c)
        if i < 0:
            raise AddressError("Invalid or unsupported Base58-encoded address.")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(s) - len(s.lstrip("1"))
    return b"\x00" * pad + body


def b58check_encode(payload: bytes) -> str:
    return b58encode(payload + sha256d(payload)[:4])


def b58check_decode(s: str) -> bytes:
    raw = b58decode(s)
    if len(raw) < 4 or sha256d(raw[:-4])[:4] != raw[-4:]:
        raise AddressError("Invalid checksum or length of Base58 address (P2PKH or P2SH)")
    return raw[:-4]


# --- scripts ----------------------------------------------------------------------------------


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return b"\x76\xa9\x14" + pubkey_hash + b"\x88\xac"


def p2sh_script(script_hash: bytes) -> bytes:
    return b"\xa9\x14" + script_hash + b"\x87"


def witness_script(version: int, program: bytes) -> bytes:
    op = 0 if version == 0 else 0x50 + version
    return bytes((op, len(program))) + program


def p2wpkh_script(pubkey: bytes) -> bytes:
    return witness_script(0, hash160(pubkey))


def witness_program(script: bytes) -> tuple[int, bytes] | None:
    """(version, program) when ``script`` is a witness program (BIP141)."""
    if not 4 <= len(script) <= 42:
        return None
    op = script[0]
    if op != 0 and not 0x51 <= op <= 0x60:
        return None
    if script[1] + 2 != len(script):
        return None
    return (0 if op == 0 else op - 0x50), script[2:]


def address_to_script(address: str, params: ChainParams) -> bytes:
    """The scriptPubKey an address pays to; AddressError if it is not one of ours."""
    if address.lower().startswith(params.bech32_hrp + "1"):
        version, program = decode_segwit(params.bech32_hrp, address)
        return witness_script(version, program)
    try:
        payload = b58check_decode(address)
    except AddressError:
        raise AddressError("Invalid or unsupported Segwit (Bech32) or Base58 encoding.") from None
    if len(payload) == 21 and payload[0] == params.p2pkh_prefix:
        return p2pkh_script(payload[1:])
    if len(payload) == 21 and payload[0] == params.p2sh_prefix:
        return p2sh_script(payload[1:])
    raise AddressError("Invalid or unsupported Base58-encoded address.")


def script_to_address(script: bytes, params: ChainParams) -> str | None:
    """The address of a scriptPubKey, or None when it has none (P2PK, multisig, OP_RETURN...)."""
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return b58check_encode(bytes((params.p2pkh_prefix,)) + script[3:23])
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return b58check_encode(bytes((params.p2sh_prefix,)) + script[2:22])
    wp = witness_program(script)
    if wp is not None:
        version, program = wp
        if version == 0 and len(program) not in (20, 32):
            return None
        return encode_segwit(params.bech32_hrp, version, program)
    return None
