"""The wallet without a chain: derivations against published vectors and
wallycore, addresses (garbage, other networks, the ones each operation may
pay), the wallet file's mode and format, PAK peg-out keys checked by the
chain's own peg-out rules, and the CLI's refusals (one line, exit 2).

The wallet against a running federation: tests/test_wallet_chain.py; on the
devnet, end to end: tests/test_e2e_peg.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wallycore as wally
from coincurve import PrivateKey

from consensus import errors
from consensus.mainchain import MAINNET, REGTEST, TESTNET, encode_segwit_address
from consensus.peg import PakEntry, PegOutRules, pak_destinations, pak_pegout_script, whitelist_proof
from consensus.standard import p2wpkh_script, p2wsh_script
from consensus.transaction import TxOut
from functionary import wallet_cli
from functionary.cli import PegOptions, init_federation
from functionary.config import Federation
from functionary.wallet import (
    PEGOUT_KINDS,
    ExchangeKey,
    ExchangeKeyError,
    ExchangeNotInPak,
    InvalidAddress,
    InvalidAmount,
    UnknownPegOutDestination,
    UnsupportedAddress,
    Wallet,
    WalletFileError,
    WalletFileExposed,
    WrongNetworkAddress,
    decode_address,
    decode_mainchain_address,
    encode_address,
    encode_mainchain_address,
    format_btc,
    pak_destination,
    pak_pegout_key,
    parse_btc,
    pegout_spending_key,
    slip77_blinding_key,
    slip77_master,
)

ROOT = Path(__file__).resolve().parents[1]

# libwally-core's SLIP-77 vector (also rust-elements' test_slip77).
SLIP77_SEED = bytes.fromhex("731e9b42eb9774f8a6b51af35a06f6ef1cdb6cf04402163ceacf0c8bace2831a")
SLIP77_MASTER = bytes.fromhex("c2f338e32ad1a2bd9cac569e67728163bf4c326a1770ec2293ba65548a581e97")
SLIP77_SCRIPT = bytes.fromhex("a914afa92d77cd3541b443771649572db096cf49bf8c87")
SLIP77_KEY = bytes.fromhex("02b067c374bb56c54c016fae29218c000ada60f81ef45b4aeebbeb24931bb8bc")

# libwally-core's Elements regtest blech32 vector (src/ctest/test_blech32).
ERT_ADDRESS = "ert1qu6ssk77c466kg3x9wd82dqkd9udddykyfykm9k"
ERT_BLINDING = bytes.fromhex("03a398eed59a2368563bbd2bc68a7ccdbbd6dcbf43b298edc810d22edb6d761800")
EL_ADDRESS = "el1qqw3e3mk4ng3ks43mh54udznuekaadh9lgwef3mwgzrfzakmdwcvqpe4ppdaa3t44v3zv2u6w56pv6tc666fvgzaclqjnkz0sd"


@pytest.fixture(scope="module")
def fed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fed")
    init_federation(out, 3, 2, free_coins=10**8, peg=PegOptions(pegin_min_depth=2, exchanges=2))
    return out


@pytest.fixture
def wallet(fed_dir: Path, tmp_path: Path) -> Wallet:
    return Wallet.create(tmp_path / "w.json", Federation.load(fed_dir / "federation.json"))


# --- Derivations ---------------------------------------------------------------------------


def test_slip77_matches_the_published_vector_and_wallycore() -> None:
    assert slip77_master(SLIP77_SEED) == SLIP77_MASTER
    assert slip77_blinding_key(SLIP77_MASTER, SLIP77_SCRIPT) == SLIP77_KEY
    for seed in (os.urandom(32), os.urandom(64)):
        master64 = bytes(wally.asset_blinding_key_from_seed(seed))
        assert master64[32:] == slip77_master(seed)
        script = p2wpkh_script(PrivateKey().public_key.format())
        assert slip77_blinding_key(slip77_master(seed), script) == bytes(
            wally.asset_blinding_key_to_ec_private_key(master64, script)
        )


def test_wallet_keys_follow_bip32_and_its_blinding_keys_slip77(wallet: Wallet) -> None:
    root = wally.bip32_key_from_seed(wallet.seed, wally.BIP32_VER_TEST_PRIVATE, 0)
    child = wally.bip32_key_from_parent_path_str(root, "m/84'/1'/0'/0/0", 0, wally.BIP32_FLAG_KEY_PRIVATE)
    address = wallet.new_address()
    script = decode_address(address).script_pubkey
    assert script == p2wpkh_script(bytes(wally.bip32_key_get_pub_key(child)))
    assert wallet.blinding_master == slip77_master(wallet.seed)
    conf = decode_address(wallet.new_address(confidential=True))
    assert (
        conf.blinding_pubkey
        == PrivateKey(slip77_blinding_key(wallet.blinding_master, conf.script_pubkey)).public_key.format()
    )


# --- Sidechain addresses -------------------------------------------------------------------


def test_confidential_address_matches_wallycores_vector() -> None:
    plain = decode_address(ERT_ADDRESS)
    assert plain.blinding_pubkey is None and plain.script_pubkey[:2] == b"\x00\x14"
    assert encode_address(plain.script_pubkey) == ERT_ADDRESS
    assert encode_address(plain.script_pubkey, ERT_BLINDING) == EL_ADDRESS
    conf = decode_address(EL_ADDRESS)
    assert conf == type(conf)(plain.script_pubkey, ERT_BLINDING)
    # P2WSH round trip, both forms.
    spk = p2wsh_script(b"\x51")
    key = PrivateKey().public_key.format()
    assert decode_address(encode_address(spk, key)) == type(conf)(spk, key)
    assert decode_address(encode_address(spk).upper()).script_pubkey == spk


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        ERT_ADDRESS[:-1] + ("q" if ERT_ADDRESS[-1] != "q" else "p"),  # checksum
        EL_ADDRESS[:-1] + ("q" if EL_ADDRESS[-1] != "q" else "p"),
        "ert1qu6ssk77c466kg3x9wd82dqkd9udddykyfykm9b",
        "xyz1qu6ssk77c466kg3x9wd82dqkd9udddykyfykm9k",
        "ert1" + "q" * 80,
    ],
)
def test_garbage_sidechain_addresses_are_invalid(text: str) -> None:
    with pytest.raises(InvalidAddress):
        decode_address(text)


def test_other_chains_addresses_are_wrong_network() -> None:
    program = bytes(range(20))
    others = [
        encode_segwit_address("bcrt", 0, program),  # the mainchain (peg out instead)
        encode_segwit_address("bc", 0, program),
        encode_segwit_address("tb", 0, program),
        encode_segwit_address("ex", 0, program),  # Liquid
        encode_segwit_address("tex", 0, program),
        str(wally.base58_from_bytes(b"\x6f" + program, wally.BASE58_FLAG_CHECKSUM)),
        str(wally.base58_from_bytes(b"\x00" + program, wally.BASE58_FLAG_CHECKSUM)),
    ]
    for text in others:
        with pytest.raises(WrongNetworkAddress):
            decode_address(text)


def test_taproot_sidechain_address_is_unsupported() -> None:
    with pytest.raises(UnsupportedAddress):
        decode_address(encode_segwit_address("ert", 1, bytes(32)))


# --- Mainchain addresses -------------------------------------------------------------------


@pytest.mark.parametrize("network", [REGTEST, TESTNET, MAINNET], ids=lambda n: n.name)
def test_mainchain_addresses_round_trip_and_match_wallycore(network) -> None:  # type: ignore[no-untyped-def]
    wally_net = {
        "regtest": wally.WALLY_NETWORK_BITCOIN_REGTEST,
        "test": wally.WALLY_NETWORK_BITCOIN_TESTNET,
        "main": wally.WALLY_NETWORK_BITCOIN_MAINNET,
    }[network.name]
    key = PrivateKey(b"\x11" * 32).public_key.format()
    scripts = [*pak_destinations(key), p2wsh_script(b"\x51"), bytes((0x51, 32)) + bytes(32)]
    for spk in scripts:
        address = encode_mainchain_address(spk, network)
        assert decode_mainchain_address(address, network) == spk
        if address.startswith(network.bech32_hrp + "1"):
            assert bytes(wally.addr_segwit_to_bytes(address, network.bech32_hrp, 0)) == spk
        else:
            assert bytes(wally.address_to_scriptpubkey(address, wally_net)) == spk


def test_mainchain_address_refusals() -> None:
    program = bytes(range(20))
    good = encode_segwit_address("bcrt", 0, program)
    with pytest.raises(InvalidAddress):
        decode_mainchain_address(good[:-1] + ("q" if good[-1] != "q" else "p"), REGTEST)
    p2pkh = str(wally.base58_from_bytes(b"\x6f" + program, wally.BASE58_FLAG_CHECKSUM))
    with pytest.raises(InvalidAddress):
        decode_mainchain_address(p2pkh[:-1] + ("1" if p2pkh[-1] != "1" else "2"), REGTEST)
    for garbage in ("", "not an address", "1111111111111111111111111", "bcrt1"):
        with pytest.raises(InvalidAddress):
            decode_mainchain_address(garbage, REGTEST)
    for wrong in (
        encode_segwit_address("bc", 0, program),
        encode_segwit_address("tb", 0, program),
        str(wally.base58_from_bytes(b"\x00" + program, wally.BASE58_FLAG_CHECKSUM)),
        str(wally.base58_from_bytes(b"\x05" + program, wally.BASE58_FLAG_CHECKSUM)),
        ERT_ADDRESS,
        EL_ADDRESS,
    ):
        with pytest.raises(WrongNetworkAddress):
            decode_mainchain_address(wrong, REGTEST)


# --- PAK peg-out keys ----------------------------------------------------------------------


def test_pak_pegout_keys_are_authorized_by_the_chains_rules(fed_dir: Path, wallet: Wallet) -> None:
    rules = PegOutRules(wallet.peg)
    for i in range(2):
        exchange = ExchangeKey.load(fed_dir / "exchanges" / f"exchange{i}.json")
        offline = PrivateKey(
            bytes.fromhex(json.loads((fed_dir / "exchanges" / f"exchange{i}.offline.json").read_text())["offline_key"])
        )
        assert wallet.peg.pak.index(exchange.entry) == i
        for index in range(3):
            pubkey, tweak = pak_pegout_key(exchange.online_key, exchange.offline_pubkey, index)
            # offline + P_i = t_i·G: the proof's summed secret needs no offline secret ...
            assert pegout_spending_key(offline, tweak).public_key.format() == pubkey
            proof = whitelist_proof(wallet.peg.pak, i, pubkey, exchange.online_key, tweak)
            for kind in PEGOUT_KINDS:
                script = pak_pegout_script(wallet.peg.parent_genesis_hash, pak_destination(pubkey, kind), pubkey, proof)
                assert rules.check_output(TxOut.explicit(wallet.policy_asset, 10_000, script)) is not None
    # ... and the keys differ per index and per exchange.
    exchanges = [ExchangeKey.load(fed_dir / "exchanges" / f"exchange{i}.json") for i in range(2)]
    keys = {pak_pegout_key(e.online_key, e.offline_pubkey, n)[0] for e in exchanges for n in range(3)}
    assert len(keys) == 6


def test_an_outsiders_proof_is_refused_by_the_chains_rules(wallet: Wallet) -> None:
    online, offline = PrivateKey(), PrivateKey()
    outsider = PakEntry(online.public_key.format(), offline.public_key.format())
    pubkey, tweak = pak_pegout_key(online, outsider.offline, 0)
    entries = (outsider, *wallet.peg.pak[1:])  # the outsider signs in the place of entry 0
    proof = whitelist_proof(entries, 0, pubkey, online, tweak)
    script = pak_pegout_script(wallet.peg.parent_genesis_hash, pak_destinations(pubkey)[1], pubkey, proof)
    with pytest.raises(errors.UnauthorizedPegOut):
        PegOutRules(wallet.peg).check_output(TxOut.explicit(wallet.policy_asset, 10_000, script))


def test_pegout_addresses_and_the_wallets_refusals(fed_dir: Path, wallet: Wallet, tmp_path: Path) -> None:
    exchange = ExchangeKey.load(fed_dir / "exchanges" / "exchange1.json")
    addresses = {kind: wallet.pegout_address(exchange, kind) for kind in PEGOUT_KINDS}
    assert addresses["p2wpkh"].startswith("bcrt1q")
    assert addresses["p2pkh"][0] in "mn" and addresses["p2sh-p2wpkh"][0] == "2"
    assert wallet.pak_next[exchange.online_pubkey.hex()] == 3
    # Each address is found again; a valid address this key did not derive is not.
    for n, kind in enumerate(PEGOUT_KINDS):
        index, pubkey, _ = wallet._find_pegout_key(exchange, decode_mainchain_address(addresses[kind], REGTEST))
        assert index == n and pak_destination(pubkey, kind) == decode_mainchain_address(addresses[kind], REGTEST)
    stranger = encode_segwit_address("bcrt", 0, bytes(20))
    with pytest.raises(UnknownPegOutDestination):
        wallet._find_pegout_key(exchange, decode_mainchain_address(stranger, REGTEST))
    with pytest.raises(UnsupportedAddress):
        wallet.pegout_address(exchange, "p2tr")
    outsider = tmp_path / "outsider.json"
    fd = os.open(outsider, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {"online_key": PrivateKey().secret.hex(), "offline_pubkey": PrivateKey().public_key.format().hex()}, f
        )
    with pytest.raises(ExchangeNotInPak):
        wallet._pak_index(ExchangeKey.load(outsider))
    os.chmod(outsider, 0o640)
    with pytest.raises(WalletFileExposed):
        ExchangeKey.load(outsider)
    bad = tmp_path / "bad.json"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write('{"online_key": "zz"}')
    with pytest.raises(ExchangeKeyError):
        ExchangeKey.load(bad)


# --- The file ------------------------------------------------------------------------------


def test_wallet_file_is_private_and_refused_when_exposed(fed_dir: Path, wallet: Wallet) -> None:
    assert (wallet.path.stat().st_mode & 0o777) == 0o600
    wallet.new_address()
    assert (wallet.path.stat().st_mode & 0o777) == 0o600  # rewritten atomically, still private
    reopened = Wallet.open(wallet.path)
    assert reopened.seed == wallet.seed and reopened.next["receive"] == 1
    assert "seed" not in repr(reopened) and wallet.seed.hex() not in repr(reopened)
    for mode in (0o640, 0o604, 0o660):
        os.chmod(wallet.path, mode)
        with pytest.raises(WalletFileExposed):
            Wallet.open(wallet.path)
    os.chmod(wallet.path, 0o600)
    with pytest.raises(WalletFileError):
        Wallet.create(wallet.path, Federation.load(fed_dir / "federation.json"))


def test_corrupt_or_foreign_wallet_files_are_refused(tmp_path: Path, wallet: Wallet) -> None:
    for name, text in (
        ("notjson", "{"),
        ("list", "[]"),
        ("version", json.dumps({**json.loads(wallet.path.read_text()), "version": 2})),
        ("seed", json.dumps({**json.loads(wallet.path.read_text()), "seed": "00"})),
        ("peg", json.dumps({**json.loads(wallet.path.read_text()), "peg": {"threshold": 9}})),
    ):
        path = tmp_path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        with pytest.raises(WalletFileError):
            Wallet.open(path)
    with pytest.raises(WalletFileError):
        Wallet.open(tmp_path / "missing.json")


def test_addresses_are_saved_before_they_are_shown(wallet: Wallet) -> None:
    address = wallet.new_address(confidential=True)
    pegin = wallet.pegin_address()
    again = Wallet.open(wallet.path)
    assert again.next["receive"] == 1 and again._watched().get(decode_address(address).script_pubkey) == "0/0"
    assert [p.address for p in again.pegins] == [pegin]
    assert again.peg.pegin_address(again.pegins[0].claim_script) == pegin
    assert pegin.startswith("bcrt1q") and len(pegin) == 64  # P2WSH


def test_amounts() -> None:
    assert parse_btc("1") == 100_000_000
    assert parse_btc("0.5") == 50_000_000
    assert parse_btc("0.00000001") == 1
    assert parse_btc(" 21000000 ") == 21_000_000 * 100_000_000
    for bad in ("0", "-1", "0.000000001", "abc", "", "nan", "inf", "21000000.00000001", "1e-9"):
        with pytest.raises(InvalidAmount):
            parse_btc(bad)
    assert format_btc(150_000_001) == "1.50000001" and format_btc(-5) == "-0.00000005"


# --- CLI refusals ------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = wallet_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_new_address_and_refusals(fed_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = str(tmp_path / "cli.json")
    fed = str(fed_dir / "federation.json")
    assert _cli(capsys, "--wallet", w, "new", "--federation", fed)[0] == 0
    code, out, _ = _cli(capsys, "--wallet", w, "address")
    assert code == 0 and out.strip().startswith("ert1q")
    code, out, _ = _cli(capsys, "--wallet", w, "--json", "address", "--confidential")
    assert code == 0 and json.loads(out)["address"].startswith("el1qq")
    code, out, _ = _cli(capsys, "--wallet", w, "pegin-address")
    assert code == 0 and out.strip().startswith("bcrt1q")
    exchange = str(fed_dir / "exchanges" / "exchange0.json")
    code, out, _ = _cli(capsys, "--wallet", w, "pegout-address", "--pak-key", exchange, "--kind", "p2pkh")
    assert code == 0 and out.strip()[0] in "mn"
    cases = [
        ("--wallet", w, "new", "--federation", fed),  # exists
        ("--wallet", w, "frobnicate"),
        ("--wallet", w, "send", "ert1qu6ssk77c466kg3x9wd82dqkd9udddykyfykm9k"),  # no amount
        ("--wallet", w, "--api", "http://127.0.0.1:9", "send", ERT_ADDRESS, "lots"),
        ("--wallet", w, "--api", "http://127.0.0.1:9", "send", "garbage", "1"),
        ("--wallet", w, "--api", "http://127.0.0.1:9", "send", encode_segwit_address("bcrt", 0, bytes(20)), "1"),
        ("--wallet", w, "pegout-address", "--pak-key", str(tmp_path / "none.json")),
        ("--wallet", w, "claim", "00" * 32),  # no mainchain RPC named
        ("--wallet", str(tmp_path / "missing.json"), "balance"),
        ("--wallet", w, "new"),
        ("balance",),
    ]
    for argv in cases:
        code, out, err = _cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("functionary wallet: "), err
    os.chmod(w, 0o644)
    code, _, err = _cli(capsys, "--wallet", w, "address")
    assert code == 2 and "WalletFileExposed" in err
    os.chmod(w, 0o600)
    # A member that is not there: one line, exit 1 (a remote failure, not bad input).
    code, _, err = _cli(capsys, "--wallet", w, "--api", "http://127.0.0.1:9", "balance")
    assert code == 1 and err.count("\n") == 1 and "ApiUnreachable" in err


def test_functionary_command_mounts_the_wallet(fed_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    top = subprocess.run([sys.executable, "-m", "functionary", "--help"], capture_output=True, text=True, env=env)
    assert top.returncode == 0 and "wallet" in top.stdout
    w = str(tmp_path / "sub.json")
    fed = str(fed_dir / "federation.json")
    run = subprocess.run(
        [sys.executable, "-m", "functionary", "wallet", "--wallet", w, "new", "--federation", fed],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    api = "http://127.0.0.1:9"
    bad = subprocess.run(
        [sys.executable, "-m", "functionary", "wallet", "--wallet", w, "--api", api, "send", "nope", "1"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "functionary", "wallet", "--help"], capture_output=True, text=True, env=env
    )
    assert helped.returncode == 0 and "pegin-address" in helped.stdout
