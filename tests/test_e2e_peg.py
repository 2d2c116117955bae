"""End to end on the devnet (``functionary devnet``: 3 member processes, 2-of-3,
and the embedded regtest mainchain), driven through ``functionary wallet``
as a user would:

    mainchain                         sidechain
    ---------                         ---------
    fund the mainchain wallet
    1 BTC -> alice's peg-in address
    (too shallow: refused by the wallet, and by the chain when forced)
    mine to pegin_min_depth   ----->  alice claims; the claim enters a block
                                      (a second claim refused)
                                      alice pays bob 0.3 BTC confidentially:
                                      bob's balance shows it, the raw tx only commitments
                                      alice funds the exchange wallet
                              <-----  the exchange pegs out 0.5 BTC (PAK): in a block
                                      (and 0.01 to P2PKH and to P2SH-P2WPKH)
    [the watchmen pay it: appended by the watchmen's work, from ``exchange_pegs_out``]
                                      supply = free coins + pegged in - pegged out - burnt,
                                      every output opened by one of the wallets

About 17 s for both tests here (2 cores), so not marked slow. The
refusals that need the real network: garbage and wrong-network
peg-out addresses, an exchange outside the PAK list (by the wallet; by the
chain with POST /tx 400 UnauthorizedPegOut when forced).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from coincurve import PrivateKey

from consensus.mainchain import MAINNET, encode_segwit_address
from consensus.standard import OutputKind, classify_output, parse_pegout
from consensus.transaction import OutPoint
from functionary.bitcoind import BitcoinRpc
from functionary.wallet import (
    COIN,
    ExchangeKey,
    MemberApi,
    TxRejected,
    Wallet,
    decode_address,
    pak_destination,
    pak_pegout_key,
    pegout_spending_key,
)
from tests.devnet import ROOT, running_devnet, wait_for

# --- The devnet ----------------------------------------------------------------------------


@dataclass
class Devnet:
    dir: Path
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    mainchain: BitcoinRpc

    @property
    def api_urls(self) -> list[str]:
        return [m["api"] for m in self.info["members"]]

    def heights(self) -> list[int]:
        out = []
        for url in self.api_urls:
            try:
                out.append(int(httpx.get(f"{url}/blocks/tip/height", timeout=2).text))
            except (httpx.HTTPError, ValueError):
                out.append(-1)
        return out

    def mine(self, n: int) -> None:
        self.mainchain.generatetoaddress(n, self.mainchain.getnewaddress())

    def wallet(self, name: str) -> Path:
        return self.dir.parent / f"{name}.json"

    def cli(self, wallet: str, *argv: str) -> dict[str, Any]:
        """``functionary wallet --json ...``, which must succeed; its JSON."""
        code, out, err = self.cli_status(wallet, "--json", *argv)
        assert code == 0, f"functionary wallet {' '.join(argv)}: exit {code}: {err}"
        return cast(dict[str, Any], json.loads(out))

    def cli_status(self, wallet: str, *argv: str) -> tuple[int, str, str]:
        run = subprocess.run(
            [sys.executable, "-m", "functionary", "wallet", "--wallet", str(self.wallet(wallet)),
             "--devnet", str(self.dir), *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in run.stderr, run.stderr
        return run.returncode, run.stdout, run.stderr

    def cli_refused(self, wallet: str, *argv: str) -> tuple[int, str]:
        """A refusal: exit 1 or 2 and one line on stderr."""
        code, _, err = self.cli_status(wallet, *argv)
        assert code in (1, 2) and err.count("\n") == 1, (code, err)
        return code, err


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    data = tmp_path_factory.mktemp("e2e") / "devnet"
    args = ("--block-interval", "1", "--mainchain-block-interval", "0", "--pegin-min-depth", "2")
    with running_devnet(data, 3, 2, *args) as (proc, info):
        mc = info["mainchain"]
        rpc = BitcoinRpc(mc["rpc_url"], user=mc["rpc_user"], password=mc["rpc_password"], timeout=30)
        net = Devnet(data, proc, info, rpc)
        wait_for(lambda: min(net.heights()) >= 1, 90, "every member past genesis")
        yield net
        rpc.close()


# --- Steps ---------------------------------------------------------------------------------


def confirmed_height(api: MemberApi, txid: str, since: int) -> int | None:
    """The height of the sidechain block holding ``txid``, searched from ``since``."""
    for height in range(since, api.tip_height() + 1):
        txids = httpx.get(f"{api.url}/block/{api.block_hash(height)[::-1].hex()}/txids", timeout=5).json()
        if txid in txids:
            return height
    return None


def claim_when_deep(devnet: Devnet, wallet: str, txid: str) -> dict[str, Any]:
    """Claim through the CLI; the members poll their bitcoind's tip every
    2 s, so right after mining a member may not see the depth yet."""

    def attempt() -> dict[str, Any] | None:
        code, out, err = devnet.cli_status(wallet, "--json", "claim", txid)
        if code == 1 and "PegInInsufficientDepth" in err:
            return None
        assert code == 0, err
        return cast(dict[str, Any], json.loads(out))

    return wait_for(attempt, 30, "a member to see the peg-in at depth", 0.5)


@dataclass(frozen=True)
class PegOutResult:
    """A peg-out accepted into a sidechain block: what the watchmen owe."""

    txid: str
    vout: int
    amount: int
    destination: bytes
    address: str
    height: int
    exchange_file: Path
    key_index: int
    """The exchange's peg-out key index: with its offline key, the destination's
    spending key is ``functionary.wallet.pegout_spending_key(offline, pak_pegout_key(online, offline_pub, i)[1])``."""


def exchange_pegs_out(devnet: Devnet, wallet: str, amount_btc: str, kind: str = "p2wpkh") -> PegOutResult:
    """The exchange asks for a peg-out address of ``kind`` from its PAK key,
    pegs out ``amount_btc`` to it, and waits until the peg-out is in a
    sidechain block. The watchmen's payment of it is the step to append:
    its ``destination`` must receive ``amount`` on the mainchain, once."""
    exchange_file = devnet.dir / "exchanges" / "exchange0.json"
    address = devnet.cli(wallet, "pegout-address", "--pak-key", str(exchange_file), "--kind", kind)["address"]
    record = devnet.cli(wallet, "pegout", address, amount_btc, "--pak-key", str(exchange_file))
    with MemberApi(devnet.api_urls[1]) as api:  # another member than the one that took it
        since = api.tip_height()
        height = wait_for(lambda: confirmed_height(api, record["txid"], since), 30, "the peg-out in a block")
        tx = api.tx(bytes.fromhex(record["txid"])[::-1])
    assert tx is not None
    out = tx.outputs[record["vout"]]
    pegout = parse_pegout(out.script_pubkey)
    assert pegout is not None and out.is_explicit and out.value.amount == record["amount"]
    assert pegout.parent_script == bytes.fromhex(record["destination"]) and pegout.pak_pubkey is not None
    # The destination belongs to the exchange's cold wallet: its offline key spends it.
    key = ExchangeKey.load(exchange_file)
    offline = PrivateKey(
        bytes.fromhex(json.loads(exchange_file.with_suffix(".offline.json").read_text())["offline_key"])
    )
    _, tweak = pak_pegout_key(key.online_key, key.offline_pubkey, record["key_index"])
    spender = pegout_spending_key(offline, tweak).public_key.format()
    assert spender == pegout.pak_pubkey and pak_destination(spender, kind) == pegout.parent_script
    return PegOutResult(
        record["txid"],
        record["vout"],
        record["amount"],
        bytes.fromhex(record["destination"]),
        address,
        height,
        exchange_file,
        record["key_index"],
    )


@dataclass
class ChainAccount:
    """What anyone can count from the public blocks, plus what the wallets
    can open: every unspent output's value (explicit, or unblinded by one of
    the wallets), peg-ins, peg-outs, fees and burns."""

    free_coins: int = 0
    pegged_in: int = 0
    pegged_out: int = 0
    fees_paid: int = 0
    coinbase_out: int = 0
    burnt: int = 0
    blinded_burns: int = 0
    utxos: dict[OutPoint, int] = field(default_factory=dict)
    unopened: int = 0

    @property
    def supply(self) -> int:
        return sum(self.utxos.values())

    @property
    def expected_supply(self) -> int:
        """Free coins + pegged in - pegged out - fees + fees re-issued by coinbases - burns."""
        return self.free_coins + self.pegged_in - self.pegged_out - self.fees_paid + self.coinbase_out - self.burnt


def account_chain(api: MemberApi, wallets: list[Wallet]) -> ChainAccount:
    acct = ChainAccount()
    openers = {s: w for w in wallets for s in w._watched()}
    for height in range(api.tip_height() + 1):
        block = api.block(api.block_hash(height))
        for tx in block.transactions:
            coinbase = tx.is_coinbase
            for i, txin in enumerate(tx.inputs):
                if txin.is_pegin:
                    acct.pegged_in += int.from_bytes(tx.input_witnesses[i].pegin_witness[0], "little")
                elif not coinbase and acct.utxos.pop(txin.prevout, None) is None:
                    acct.unopened += 1  # spends an output none of the wallets could open
            for n, out in enumerate(tx.outputs):
                kind = classify_output(out)
                if kind is OutputKind.FEE:
                    acct.fees_paid += out.value.amount
                    continue
                if kind is OutputKind.PEGOUT:
                    acct.pegged_out += out.value.amount
                    continue
                if not out.is_explicit:
                    opener = openers.get(out.script_pubkey)
                    opened = (
                        opener._open(OutPoint(tx.txid, n), out, tx.output_witnesses[n], "", height) if opener else None
                    )
                    if opened is None:
                        if kind is OutputKind.BURN:
                            acct.blinded_burns += 1  # the wallet's zero-value dummies: checked by the sum below
                        else:
                            acct.unopened += 1
                        continue
                    value = opened.value
                else:
                    value = out.value.amount
                if coinbase and height == 0:
                    acct.free_coins += value
                elif coinbase:
                    acct.coinbase_out += value
                if kind is OutputKind.BURN:
                    acct.burnt += value
                else:
                    acct.utxos[OutPoint(tx.txid, n)] = value
    return acct


# --- The test ------------------------------------------------------------------------------


def test_peg_in_pay_confidentially_and_peg_out_on_the_devnet(devnet: Devnet) -> None:
    started = time.monotonic()
    rpc = devnet.mainchain
    # The mainchain wallet: the devnet mined 101 blocks at start; mine more to it.
    rpc.generatetoaddress(10, rpc.getnewaddress())
    assert rpc.getbalance() > 1

    # 1 BTC to alice's peg-in address.
    devnet.cli("alice", "new")
    pegin = devnet.cli("alice", "pegin-address")["address"]
    mtxid = rpc.sendtoaddress(pegin, 1)
    code, err = devnet.cli_refused("alice", "claim", mtxid)
    assert code == 2 and "PegInNotDeepEnough" in err  # unconfirmed: the wallet will not
    devnet.mine(1)
    code, err = devnet.cli_refused("alice", "claim", mtxid, "--no-depth-check")
    assert code == 1 and "PegInInsufficientDepth" in err and "Needs more confirmations" in err  # nor will the chain
    devnet.mine(1)
    since = max(devnet.heights())
    claim = claim_when_deep(devnet, "alice", mtxid)
    code, err = devnet.cli_refused("alice", "claim", mtxid)
    assert code == 1 and ("txn-mempool-conflict" in err or "PegInAlreadyClaimed" in err), err

    # The claim enters a block; alice's balance is the peg-in less the fee.
    with MemberApi(devnet.api_urls[2]) as api:
        claim_height = wait_for(lambda: confirmed_height(api, claim["txid"], since), 30, "the claim in a block")
    wait_for(lambda: devnet.cli("alice", "balance")["confirmed"] == COIN - claim["fee"], 30, "alice's claimed coins")
    code, err = devnet.cli_refused("alice", "claim", mtxid)
    assert code == 1 and "PegInAlreadyClaimed" in err

    # 0.3 BTC to bob, confidentially: bob opens it, the chain shows commitments.
    devnet.cli("bob", "new")
    bob_address = devnet.cli("bob", "address", "--confidential")["address"]
    paid = devnet.cli("alice", "send", bob_address, "0.3")
    wait_for(lambda: devnet.cli("bob", "balance")["confirmed"] == 30_000_000, 30, "bob's 0.3 BTC")
    raw = httpx.get(f"{devnet.api_urls[0]}/tx/{paid['txid']}/hex", timeout=5).text
    with MemberApi(devnet.api_urls[0]) as api:
        tx = api.tx(bytes.fromhex(paid["txid"])[::-1])
    assert tx is not None and tx.serialize().hex() == raw
    (to_bob,) = [o for o in tx.outputs if o.script_pubkey == decode_address(bob_address).script_pubkey]
    assert to_bob.value.is_commitment and to_bob.asset.is_commitment
    assert (30_000_000).to_bytes(8, "big").hex() not in raw
    assert [o.is_explicit for o in tx.outputs] == [False, False, True]  # bob, alice's change, the fee

    # The exchange wallet, funded by alice; it pegs out 0.5 BTC with its PAK key.
    devnet.cli("exchange", "new")
    exchange_address = devnet.cli("exchange", "address", "--confidential")["address"]
    wait_for(lambda: devnet.cli("alice", "balance")["locked"] == 0, 30, "alice's change")
    devnet.cli("alice", "send", exchange_address, "0.6")
    wait_for(lambda: devnet.cli("exchange", "balance")["confirmed"] == 60_000_000, 30, "the exchange's coins")
    pegout = exchange_pegs_out(devnet, "exchange", "0.5")
    assert pegout.amount == COIN // 2 and pegout.height > claim_height
    # (The watchmen paying ``pegout`` on the mainchain is appended here.)

    # The other PAK destinations are accepted too.
    others = [exchange_pegs_out(devnet, "exchange", "0.01", kind) for kind in ("p2pkh", "p2sh-p2wpkh")]
    assert [o.address[0] for o in others] in (["m", "2"], ["n", "2"])

    # Supply: every coin is accounted for, and every output opened by a wallet.
    balances = {n: devnet.cli(n, "balance")["confirmed"] for n in ("alice", "bob", "exchange")}
    wallets = [Wallet.open(devnet.wallet(n)) for n in ("alice", "bob", "exchange")]
    fed = json.loads((devnet.dir / "federation.json").read_text())
    with MemberApi(devnet.api_urls[1]) as api:
        acct = account_chain(api, wallets)
    assert acct.unopened == 0
    assert acct.free_coins == fed["chain"]["initial_free_coins"]
    assert acct.pegged_in == COIN  # the one claim; its mainchain output pays the peg-in address 1 BTC
    assert acct.pegged_out == COIN // 2 + 2 * COIN // 100
    assert acct.coinbase_out <= acct.fees_paid
    assert acct.supply == acct.expected_supply, acct
    mtx = rpc.getrawtransaction(mtxid, True)
    assert isinstance(mtx, dict)
    assert sum(round(o["value"] * COIN) for o in mtx["vout"] if o["scriptPubKey"].get("address") == pegin) == COIN

    # Every member's own peg ledger (its /status) counts the same peg-ins and burns.
    def ledgers_agree() -> bool:
        for url in devnet.api_urls:
            peg = httpx.get(f"{url}/status", timeout=5).json().get("peg") or {}
            if (peg.get("pegged_in"), peg.get("sidechain_supply"), peg.get("balanced")) != (
                acct.pegged_in,
                acct.pegged_in - acct.pegged_out,
                True,
            ):
                return False
        return True

    wait_for(ledgers_agree, 30, "every member's peg ledger to agree with the blocks")
    # The wallets' own view agrees with the chain's.
    mine = {o: v for o, v in acct.utxos.items() if any(o in w.utxos for w in wallets)}
    assert sum(balances.values()) == sum(mine.values())
    # The watchmen pay every peg-out on the mainchain, each exactly once.
    owed = [pegout, *others]
    paid_to = {p.address: 0 for p in owed}

    def received(address: str) -> int:
        scan = rpc.call("scantxoutset", "start", [f"addr({address})"])
        return round(float(scan["total_amount"]) * COIN)

    before = {p.address: received(p.address) for p in owed}

    def all_paid() -> bool:
        devnet.mine(1)  # confirms what is in the mempool, and drives depth
        for p in owed:
            paid_to[p.address] = received(p.address) - before[p.address]
        return all(paid_to[p.address] == p.amount for p in owed)

    wait_for(all_paid, 120, f"the watchmen to pay {[(p.address, p.amount) for p in owed]}", interval=1.0)
    total = sum(p.amount for p in owed)

    def settled() -> bool:
        devnet.mine(1)
        for url in devnet.api_urls:
            peg = httpx.get(f"{url}/status", timeout=5).json()["peg"]
            if (peg["paid_out"], peg["pending_pegouts"], peg["live_payouts"], peg["balanced"]) != (total, 0, [], True):
                return False
        return True

    # Confirmed deep enough, every member's ledger counts them paid and the
    # federation's coins still equal pegged-in minus paid-out minus fees.
    wait_for(settled, 90, "every member's ledger to count the payouts confirmed", interval=1.0)
    peg = httpx.get(f"{devnet.api_urls[0]}/status", timeout=5).json()["peg"]
    assert peg["federation_utxo_sum"] == COIN - total - peg["mainchain_fees"] and peg["mainchain_fees"] > 0
    # More payout rounds pass: nothing is paid twice.
    start_height = max(devnet.heights())
    wait_for(lambda: min(devnet.heights()) >= start_height + 12, 60, "two more payout rounds")
    devnet.mine(7)
    assert {p.address: received(p.address) - before[p.address] for p in owed} == {p.address: p.amount for p in owed}
    status = httpx.get(f"{devnet.api_urls[0]}/status", timeout=5).json()["peg"]
    print(f"e2e: {time.monotonic() - started:.1f} s; supply {acct.supply}; {acct}; member 0's peg: {status}")


def test_pegout_refusals_on_the_devnet(devnet: Devnet) -> None:
    devnet.cli("refuser", "new")
    faucet = devnet.dir / "faucet.json"
    devnet.cli("refuser", "import-key", str(faucet))
    wait_for(lambda: devnet.cli("refuser", "balance")["confirmed"] > COIN, 30, "the faucet's coins")
    exchange = str(devnet.dir / "exchanges" / "exchange0.json")
    program = bytes(range(20))
    for address, code in (
        ("garbage", "InvalidAddress"),
        (encode_segwit_address("bcrt", 0, program)[:-1] + "q", "InvalidAddress"),
        (encode_segwit_address("bc", 0, program), "WrongNetworkAddress"),
        (encode_segwit_address("tb", 0, program), "WrongNetworkAddress"),
        (devnet.cli("refuser", "address")["address"], "WrongNetworkAddress"),
        (encode_segwit_address("bcrt", 0, bytes(32)), "UnsupportedAddress"),
        (encode_segwit_address("bcrt", 0, program), "UnknownPegOutDestination"),
    ):
        status, err = devnet.cli_refused("refuser", "pegout", address, "0.1", "--pak-key", exchange)
        assert status == 2 and code in err, (address, err)
    # An exchange outside the PAK list: the wallet refuses ...
    outsider_file = devnet.dir.parent / "outsider.json"
    fd = os.open(outsider_file, os.O_WRONLY | os.O_CREAT, 0o600)
    online, offline = PrivateKey(), PrivateKey()
    with os.fdopen(fd, "w") as f:
        json.dump({"online_key": online.secret.hex(), "offline_pubkey": offline.public_key.format().hex()}, f)
    address = devnet.cli("refuser", "pegout-address", "--pak-key", str(outsider_file))["address"]
    status, err = devnet.cli_refused("refuser", "pegout", address, "0.1", "--pak-key", str(outsider_file))
    assert status == 2 and "ExchangeNotInPak" in err
    # ... and the chain, when forced through a registered exchange's API key
    # (POST /pegouts), answers 400 with its code.
    wallet = Wallet.open(devnet.wallet("refuser"))
    registered = ExchangeKey.load(Path(exchange))
    outsider = dataclasses.replace(ExchangeKey.load(outsider_file), name=registered.name, api_key=registered.api_key)
    with MemberApi(devnet.api_urls[0]) as api:
        wallet.sync(api)
        before = wallet.balance()
        _, pubkey, tweak = wallet.next_pegout_key(outsider)
        for genesis, code in ((None, "UnauthorizedPegOut"), (MAINNET.genesis_hash, "WrongParentChain")):
            with pytest.raises(TxRejected) as refused:
                wallet.submit_pegout(
                    api,
                    pak_destination(pubkey, "p2wpkh"),
                    COIN // 10,
                    outsider,
                    pubkey=pubkey,
                    tweak=tweak,
                    pak_entries=(outsider.entry, *wallet.peg.pak[1:]),
                    pak_index=0,
                    parent_genesis=genesis,
                )
            assert (refused.value.status, refused.value.code) == (400, code)
        wallet.sync(api)
        # nothing left locked (a block may have arrived: compare all but the scan height)
        assert dataclasses.replace(wallet.balance(), height=before.height) == before
