"""Hostile bytes into the peg's parsers: 10,000 inputs each, random and
mutated from valid ones, and nothing but ParseError comes out (or, for the
rules built on them, nothing but their typed errors). Seeded; the seed and
the input are in every failure message.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest

from consensus import errors
from consensus.mainchain import BtcBlockHeader, BtcTransaction, MerkleBlock, decode_segwit_address
from consensus.peg import PakEntry, PegInWitness, PegOutRules, match_liquid_watchman, parse_fedpegscript
from consensus.standard import parse_pegout
from consensus.transaction import OutPoint, TxOut
from tests.test_peg_rules import ASSET, CLAIM_SCRIPT, GOOD, PEG, deposit, rules

N = 10_000
SEED = 0x9E6


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    """One to three edits: flip, overwrite, insert, delete, or truncate."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(5)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and i < len(b):
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and i < len(b):
            b[i] = rnd.randrange(256)
        elif op == 2:
            b[i:i] = rnd.randbytes(rnd.randint(1, 4))
        elif op == 3 and i < len(b):
            del b[i : i + rnd.randint(1, 8)]
        else:
            del b[i:]
    return bytes(b)


def _inputs(rnd: random.Random, valid: list[bytes], max_len: int = 300) -> list[bytes]:
    """Half random bytes of random length, half mutations of valid encodings."""
    out = []
    for i in range(N):
        if i % 2:
            out.append(_mutate(rnd, rnd.choice(valid)))
        else:
            out.append(rnd.randbytes(rnd.randint(0, max_len)))
    return out


DEP = deposit(GOOD, n_tx=7, position=5)
STACK = DEP.stack()
VALID_TXS = [STACK[4], DEP.tx.serialize()]
VALID_PROOFS = [STACK[5], MerkleBlock.build(DEP.header, DEP.txids, DEP.txids[:3]).serialize()]


def _only_parse_errors(parse: Callable[[bytes], object], inputs: list[bytes], seed: int) -> int:
    ok = 0
    for data in inputs:
        try:
            parse(data)
            ok += 1
        except errors.ParseError:
            pass
        except Exception as e:  # pragma: no cover - the failure being tested for
            pytest.fail(f"seed {seed:#x}: {type(e).__name__}: {e} on {data.hex()}")
    return ok


def test_bitcoin_transaction_parser() -> None:
    rnd = random.Random(SEED)
    inputs = _inputs(rnd, VALID_TXS)
    ok = _only_parse_errors(BtcTransaction.parse, inputs, SEED)
    assert ok > 0  # some mutations still parse (a flipped value bit, say)
    # What parses re-serializes to the same bytes: one encoding per transaction.
    for data in inputs:
        try:
            tx = BtcTransaction.parse(data)
        except errors.ParseError:
            continue
        assert tx.serialize() == data, f"seed {SEED:#x}: {data.hex()}"


def test_merkle_block_parser_and_extraction() -> None:
    rnd = random.Random(SEED + 1)
    inputs = _inputs(rnd, VALID_PROOFS)
    inputs += [DEP.header.serialize() + rnd.randbytes(rnd.randint(0, 120)) for _ in range(N // 10)]

    def parse_and_extract(data: bytes) -> object:
        return MerkleBlock.parse(data).extract()

    _only_parse_errors(parse_and_extract, inputs, SEED + 1)
    for data in inputs:
        try:
            mb = MerkleBlock.parse(data)
        except errors.ParseError:
            continue
        assert mb.serialize() == data


def test_header_fedpegscript_pak_and_witness_parsers() -> None:
    rnd = random.Random(SEED + 2)
    headers = _inputs(rnd, [DEP.header.serialize()], 100)
    _only_parse_errors(BtcBlockHeader.parse, headers, SEED + 2)
    scripts = _inputs(rnd, [PEG.fedpegscript], 700)
    _only_parse_errors(parse_fedpegscript, scripts, SEED + 2)
    for s in scripts:
        match_liquid_watchman(s)  # never raises
    extensions = [rnd.randbytes(66) if i % 2 else rnd.randbytes(rnd.randint(0, 70)) for i in range(N)]
    _only_parse_errors(PakEntry.from_extension, extensions, SEED + 2)

    def stack_of(data: bytes) -> tuple[bytes, ...]:
        # Six random items cut from the input, some swapped for good ones;
        # now and then one too few or one too many.
        cuts = sorted(rnd.randint(0, len(data)) for _ in range(5))
        items = [data[x:y] for x, y in zip([0, *cuts], [*cuts, len(data)])]
        for i in range(6):
            if rnd.random() < 0.4:
                items[i] = STACK[i]
        roll = rnd.random()
        if roll < 0.05:
            items.pop()
        elif roll < 0.1:
            items.append(b"")
        return tuple(items)

    stacks = [stack_of(rnd.randbytes(rnd.randint(0, 400))) for _ in range(N)]
    for stack in stacks:
        try:
            PegInWitness.parse(stack)
        except errors.ParseError:
            pass
        except Exception as e:  # pragma: no cover
            pytest.fail(f"seed {SEED + 2:#x}: {type(e).__name__}: {e} on {[x.hex() for x in stack]}")


def test_segwit_address_decoder() -> None:
    rnd = random.Random(SEED + 3)
    good = PEG.pegin_address(CLAIM_SCRIPT)
    alphabet = string.printable + "qpzry9x8gf2tvdw0s3jn54khce6mua7l" * 4 + "\x00é"
    inputs: list[str] = []
    for i in range(N):
        if i % 2:
            chars = list(good)
            for _ in range(rnd.randint(1, 3)):
                chars[rnd.randrange(len(chars))] = rnd.choice(alphabet)
            inputs.append("".join(chars))
        else:
            inputs.append("bcrt1" + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80))))
    for s in inputs:
        try:
            decode_segwit_address("bcrt", s)
        except errors.ParseError:
            pass
        except Exception as e:  # pragma: no cover
            pytest.fail(f"seed {SEED + 3:#x}: {type(e).__name__}: {e} on {s!r}")


def test_pegin_rules_raise_only_their_typed_errors() -> None:
    """The validator over hostile witnesses: a PegInError subclass or success,
    never anything else (a bug must not look like a rejection)."""
    rnd = random.Random(SEED + 4)
    rule = rules(DEP)
    for i in range(N):
        stack = list(STACK)
        j = rnd.randrange(6)
        stack[j] = _mutate(rnd, stack[j]) if i % 3 else rnd.randbytes(rnd.randint(0, 100))
        try:
            rule.check_claim(DEP.prevout, tuple(stack))
        except errors.PegInError:
            continue
        except Exception as e:  # pragma: no cover
            pytest.fail(f"seed {SEED + 4:#x}: {type(e).__name__}: {e} on item {j}: {stack[j].hex()}")
        # Accepted: the edit undid itself, or it touched only the proof's
        # padding flag bits, which Bitcoin Core's ExtractMatches ignores too.
        if stack[j] != STACK[j]:
            assert j == 5, f"seed {SEED + 4:#x}: item {j} accepted as {stack[j].hex()}"
            assert MerkleBlock.parse(stack[j]).extract() == DEP.proof.extract()


def test_pegout_rules_raise_only_their_typed_errors() -> None:
    rnd = random.Random(SEED + 5)
    from tests.test_peg_rules_pegout import pak_script

    valid = [pak_script(k) for k in ("p2pkh", "p2wpkh", "p2sh_p2wpkh")]
    rule = PegOutRules(PEG)
    for data in _inputs(rnd, valid, 250):
        script = b"\x6a" + data[1:] if rnd.random() < 0.5 else data
        try:
            parse_pegout(script)
            rule.check_output(TxOut.explicit(ASSET, 1, script))
        except errors.PegOutError:
            pass
        except Exception as e:  # pragma: no cover
            pytest.fail(f"seed {SEED + 5:#x}: {type(e).__name__}: {e} on {script.hex()}")


def test_fuzz_inputs_cover_outpoints_too() -> None:
    """Claims of random outputs of the valid transaction: typed errors only."""
    rule = rules(DEP)
    for index in range(0, 64):
        try:
            rule.check_claim(OutPoint(DEP.tx.txid, index), STACK)
        except errors.PegInError:
            assert index != 0
