"""Transaction validation throughput against one ECDSA verification.

A chain is funded with one fan-out transaction paying N P2WPKH outputs to N
fixed keys; then N signed 1-input, 2-output P2WPKH transactions (payment +
explicit fee output, 276 bytes) are validated in turn: parse from bytes, then
``ChainState.validate_transaction`` (UTXO lookup, templates, amounts,
Elements signature hash through libwally, one ECDSA verification). One core,
in-process.

    metric                              unit
    tx_validate_rate                    tx/s
    tx_parse_rate                       tx/s   (parse alone, for the breakdown)
    ecdsa_verify_rate                   verify/s  (coincurve, key already parsed)
    tx_validate_cost_in_ecdsa_verifies  ratio; the goal is < 4
"""

from __future__ import annotations

from coincurve import PrivateKey

from bench._report import emit, per_second
from consensus.block import Block
from consensus.chainstate import ChainState
from consensus.header import build_solution, sign_block_hash
from consensus.params import ChainParams, FederationParams
from consensus.standard import p2wpkh_script, p2wpkh_script_code, sign_segwit_v0
from consensus.transaction import ConfidentialValue, OutPoint, Transaction, TxIn, TxInWitness, TxOut

N = 1000
ASSET = bytes(range(32))
FEE = 500
AMOUNT = 100_000


def _key(i: int) -> PrivateKey:
    return PrivateKey((i + 1).to_bytes(32, "big"))


def build() -> tuple[ChainState, list[bytes]]:
    signers = [PrivateKey(bytes([0xF0 + i]) * 32) for i in range(3)]
    fed = FederationParams(tuple(k.public_key.format() for k in signers), 2)
    funder = _key(10_000)
    funder_pub = funder.public_key.format()
    total = N * AMOUNT + FEE
    params = ChainParams(
        fed,
        policy_asset=ASSET,
        initial_free_coins=total,
        initial_free_coins_script=p2wpkh_script(funder_pub),
    )
    chain = ChainState(params)
    keys = [_key(i) for i in range(N)]
    pubs = [k.public_key.format() for k in keys]

    genesis_tx = chain.genesis.transactions[0]
    fan = Transaction(
        2,
        (TxIn(OutPoint(genesis_tx.txid, 0)),),
        (*(TxOut.explicit(ASSET, AMOUNT, p2wpkh_script(p)) for p in pubs), TxOut.explicit(ASSET, FEE, b"")),
    )
    spk = p2wpkh_script(funder_pub)
    sig = sign_segwit_v0(funder, fan, 0, p2wpkh_script_code(spk[2:]), ConfidentialValue.explicit(total))
    fan = fan.with_witnesses((TxInWitness(script_witness=(sig, funder_pub)),))
    when = params.genesis_time + 60
    block = chain.assemble_block([fan], when)
    block = block.with_solution(build_solution(fed, {i: sign_block_hash(signers[i], block.hash) for i in (0, 1)}))
    chain.connect_block(Block.parse(block.serialize()), when)

    raws = []
    for i, (key, pub) in enumerate(zip(keys, pubs)):
        dest = p2wpkh_script(pubs[(i + 1) % N])
        tx = Transaction(
            2,
            (TxIn(OutPoint(fan.txid, i), b"", 0xFFFFFFFD),),
            (TxOut.explicit(ASSET, AMOUNT - FEE, dest), TxOut.explicit(ASSET, FEE, b"")),
        )
        spk = p2wpkh_script(pub)
        sig = sign_segwit_v0(key, tx, 0, p2wpkh_script_code(spk[2:]), ConfidentialValue.explicit(AMOUNT))
        raws.append(tx.with_witnesses((TxInWitness(script_witness=(sig, pub)),)).serialize())
    return chain, raws


def main() -> None:
    chain, raws = build()
    for raw in raws:  # every transaction is valid before anything is timed
        assert chain.validate_transaction(Transaction.parse(raw)) == FEE

    state = {"i": 0}
    validate = chain.validate_transaction
    parse = Transaction.parse

    def one_tx() -> None:
        i = state["i"]
        state["i"] = (i + 1) % N
        validate(parse(raws[i]))

    def one_parse() -> None:
        i = state["i"]
        state["i"] = (i + 1) % N
        parse(raws[i])

    key = _key(1)
    pub = key.public_key
    msg = bytes(32)
    der = key.sign(msg, hasher=None)

    def one_verify() -> None:
        pub.verify(der, msg, hasher=None)

    tx_rate = per_second(one_tx, 3.0)
    parse_rate = per_second(one_parse, 1.0)
    verify_rate = per_second(one_verify, 2.0)
    emit("tx_validate", "tx_validate_rate", tx_rate, "tx/s", tx_bytes=len(raws[0]), inputs=1, outputs=2)
    emit("tx_validate", "tx_parse_rate", parse_rate, "tx/s")
    emit("tx_validate", "ecdsa_verify_rate", verify_rate, "verify/s")
    emit("tx_validate", "tx_validate_cost_in_ecdsa_verifies", verify_rate / tx_rate, "ratio", goal="< 4")


if __name__ == "__main__":
    main()
