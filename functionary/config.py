"""Configuration files: the public federation file, each member's config, and
its private key file.

``federation.json`` (public; anyone may read it):

    field              meaning
    version            1
    threshold          m
    members[]          index, name, signing_pubkey (33-byte hex), identity_pubkey
                       (Ed25519, 32-byte hex), p2p "host:port", api URL
    signblockscript    the block challenge, OP_m <keys> OP_n OP_CHECKMULTISIG
    chain              genesis_time, block_interval, round_timeout,
                       initial_free_coins, initial_free_coins_script (hex)
    fault_bounds       offline_tolerance (n - m), equivocation_tolerance (2m - n - 1)
    chain_id           hex of sha256 over the canonical consensus fields

``member.json`` (per member): member index, paths to the federation and key
files (relative to the config file), data_dir, database_url (optional),
p2p_listen, api_listen, log_level.

``keys.json`` (per member, mode 0600): signing_key (secp256k1, 32-byte hex)
and identity_seed (Ed25519 seed, 32-byte hex).

Every problem with a file raises a :class:`ConfigError` subclass naming the
file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from nacl.signing import SigningKey

from consensus.errors import ConsensusError
from consensus.mainchain import MAINNET, REGTEST, TESTNET
from consensus.params import ChainParams, FederationParams
from consensus.peg import PakEntry, PegParams
from consensus.script import multisig_script

from .errors import FunctionaryError


class ConfigError(FunctionaryError):
    """A configuration or key file that cannot be used."""


class ConfigFileMissing(ConfigError):
    pass


class ConfigSyntax(ConfigError):
    pass


class ConfigInvalid(ConfigError):
    pass


class KeyFileExposed(ConfigError):
    """A private key file readable by other users."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileMissing(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigFileMissing(f"{path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigSyntax(f"{path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{path}: top level must be an object")
    return data


class _Fields:
    """Typed access to one JSON object, with errors that name file and field."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.path = path
        self.data = data
        self.prefix = prefix

    def _err(self, key: str, msg: str) -> ConfigInvalid:
        return ConfigInvalid(f"{self.path}: {self.prefix}{key}: {msg}")

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self._err(key, "missing")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._err(key, f"must be {kind.__name__}, got {type(value).__name__}")
        return value

    def hex(self, key: str, size: int | None = None, default: str | None = None) -> bytes:
        s = self.get(key, str, ... if default is None else default)
        try:
            raw = bytes.fromhex(s)
        except ValueError:
            raise self._err(key, "not hex") from None
        if size is not None and len(raw) != size:
            raise self._err(key, f"must be {size} bytes, got {len(raw)}")
        return raw

    def int_range(self, key: str, lo: int, hi: int, default: Any = ...) -> int:
        v: int = self.get(key, int, default)
        if not lo <= v <= hi:
            raise self._err(key, f"must be in [{lo}, {hi}], got {v}")
        return v

    def address(self, key: str, default: Any = ...) -> tuple[str, int]:
        s = self.get(key, str, default)
        host, sep, port = s.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self._err(key, f"must be host:port, got {s!r}")
        return host, int(port)


@dataclass(frozen=True)
class MemberInfo:
    index: int
    name: str
    signing_pubkey: bytes
    identity_pubkey: bytes
    p2p: tuple[str, int]
    api: str


NETWORKS = {"regtest": REGTEST, "testnet": TESTNET, "mainnet": MAINNET}


@dataclass(frozen=True)
class PegSettings:
    """The peg's consensus parameters (the fedpegscript, PAK list, depths)
    and the watchmen's operating rules (how often to pay, fee bounds)."""

    params: PegParams
    pak_names: tuple[str, ...] = ()
    payout_interval: int = 10
    """Sidechain blocks between payout proposals."""
    min_feerate: int = 1
    max_feerate: int = 500
    """Bounds on the payout fee rate, satoshis per virtual byte."""
    bump_after: int = 6
    """Mainchain blocks a payout may stay unconfirmed before a fee bump."""

    def to_json(self) -> dict[str, Any]:
        p = self.params
        return {
            "parent": p.parent.name,
            "watchman_keys": [k.hex() for k in p.watchman_keys],
            "threshold": p.peg_threshold,
            "emergency_keys": [k.hex() for k in p.emergency_keys],
            "emergency_threshold": p.emergency_threshold,
            "csv_delay": p.csv_delay,
            "pegin_min_depth": p.pegin_min_depth,
            "min_pegin_value": p.min_pegin_value,
            "pak": [
                {"name": name, "online": e.online.hex(), "offline": e.offline.hex()}
                for name, e in zip(self.pak_names, p.pak)
            ],
            "payout_interval": self.payout_interval,
            "min_feerate": self.min_feerate,
            "max_feerate": self.max_feerate,
            "bump_after": self.bump_after,
            "fedpegscript": p.fedpegscript.hex(),
        }

    @classmethod
    def from_json(cls, path: Path, raw: dict[str, Any]) -> "PegSettings":
        f = _Fields(path, raw, "peg.")
        parent = f.get("parent", str, "regtest")
        if parent not in NETWORKS:
            raise ConfigInvalid(f"{path}: peg.parent: one of {', '.join(NETWORKS)}")
        pak_raw = f.get("pak", list, [])
        names, entries = [], []
        for i, item in enumerate(pak_raw):
            if not isinstance(item, dict):
                raise ConfigInvalid(f"{path}: peg.pak[{i}]: must be an object")
            e = _Fields(path, item, f"peg.pak[{i}].")
            names.append(e.get("name", str, f"exchange{i}"))
            try:
                entries.append(PakEntry(e.hex("online", 33), e.hex("offline", 33)))
            except (ValueError, ConsensusError) as err:
                raise ConfigInvalid(f"{path}: peg.pak[{i}]: {err}") from None
        try:
            params = PegParams(
                watchman_keys=tuple(bytes.fromhex(k) for k in f.get("watchman_keys", list)),
                peg_threshold=f.get("threshold", int),
                emergency_keys=tuple(bytes.fromhex(k) for k in f.get("emergency_keys", list, [])),
                emergency_threshold=f.get("emergency_threshold", int, 0),
                csv_delay=f.get("csv_delay", int, 4032),
                pegin_min_depth=f.get("pegin_min_depth", int, 102),
                min_pegin_value=f.get("min_pegin_value", int, 10_000),
                parent=NETWORKS[parent],
                pak=tuple(entries),
            )
        except (ValueError, TypeError, ConsensusError) as err:
            raise ConfigInvalid(f"{path}: peg: {err}") from None
        if "fedpegscript" in raw and f.hex("fedpegscript") != params.fedpegscript:
            raise ConfigInvalid(f"{path}: peg.fedpegscript does not match the peg's keys and thresholds")
        settings = cls(
            params=params,
            pak_names=tuple(names),
            payout_interval=f.int_range("payout_interval", 1, 10_000, 10),
            min_feerate=f.int_range("min_feerate", 1, 100_000, 1),
            max_feerate=f.int_range("max_feerate", 1, 100_000, 500),
            bump_after=f.int_range("bump_after", 1, 10_000, 6),
        )
        if settings.min_feerate > settings.max_feerate:
            raise ConfigInvalid(f"{path}: peg: min_feerate above max_feerate")
        return settings


EXCHANGE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class ExchangeInfo:
    """An exchange allowed to submit peg-outs through the exchange API.

    API policy, not consensus: it stays out of the chain id, so registering an
    exchange never splits the federation's chain."""

    id: str
    api_pubkey: bytes
    """Ed25519 public key that signs the exchange's requests (32 bytes)."""
    requests_per_minute: int = 60
    burst: int = 10

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "api_pubkey": self.api_pubkey.hex(),
            "requests_per_minute": self.requests_per_minute,
            "burst": self.burst,
        }

    @classmethod
    def from_json(cls, path: Path, raw: Any, i: int) -> "ExchangeInfo":
        if not isinstance(raw, dict):
            raise ConfigInvalid(f"{path}: exchanges[{i}]: must be an object")
        f = _Fields(path, raw, f"exchanges[{i}].")
        ident = f.get("id", str)
        if not EXCHANGE_ID.fullmatch(ident):
            raise ConfigInvalid(f"{path}: exchanges[{i}].id: 1 to 64 of A-Z a-z 0-9 _ . -")
        return cls(
            id=ident,
            api_pubkey=f.hex("api_pubkey", 32),
            requests_per_minute=f.int_range("requests_per_minute", 1, 1_000_000, 60),
            burst=f.int_range("burst", 1, 1_000_000, 10),
        )


@dataclass(frozen=True)
class Federation:
    members: tuple[MemberInfo, ...]
    threshold: int
    genesis_time: int
    block_interval: float
    round_timeout: float
    initial_free_coins: int
    initial_free_coins_script: bytes
    peg: PegSettings | None = None
    exchanges: tuple[ExchangeInfo, ...] = ()

    @property
    def n(self) -> int:
        return len(self.members)

    def federation_params(self) -> FederationParams:
        return FederationParams(tuple(m.signing_pubkey for m in self.members), self.threshold)

    def chain_params(self) -> ChainParams:
        return ChainParams(
            federation=self.federation_params(),
            genesis_time=self.genesis_time,
            initial_free_coins=self.initial_free_coins,
            initial_free_coins_script=self.initial_free_coins_script,
            parent_genesis_hash=self.peg.params.parent_genesis_hash if self.peg else b"\x00" * 32,
        )

    @property
    def chain_id(self) -> bytes:
        """Commits to every consensus-relevant field, so members of different
        federations (or of the same keys with other rules) never talk."""
        canon = json.dumps(
            {
                "signblockscript": self.federation_params().challenge.hex(),
                "genesis_time": self.genesis_time,
                "initial_free_coins": self.initial_free_coins,
                "initial_free_coins_script": self.initial_free_coins_script.hex(),
                "peg": self.peg.to_json() if self.peg else None,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canon.encode()).digest()

    def to_json(self) -> dict[str, Any]:
        fed = self.federation_params()
        return {
            "version": 1,
            "threshold": self.threshold,
            "members": [
                {
                    "index": m.index,
                    "name": m.name,
                    "signing_pubkey": m.signing_pubkey.hex(),
                    "identity_pubkey": m.identity_pubkey.hex(),
                    "p2p": f"{m.p2p[0]}:{m.p2p[1]}",
                    "api": m.api,
                }
                for m in self.members
            ],
            "signblockscript": multisig_script(fed.m, fed.signing_keys).hex(),
            "chain": {
                "genesis_time": self.genesis_time,
                "block_interval": self.block_interval,
                "round_timeout": self.round_timeout,
                "initial_free_coins": self.initial_free_coins,
                "initial_free_coins_script": self.initial_free_coins_script.hex(),
            },
            "fault_bounds": {
                "offline_tolerance": fed.offline_tolerance,
                "equivocation_tolerance": fed.equivocation_tolerance,
            },
            **({"peg": self.peg.to_json()} if self.peg else {}),
            **({"exchanges": [e.to_json() for e in self.exchanges]} if self.exchanges else {}),
            "chain_id": self.chain_id.hex(),
        }

    @classmethod
    def load(cls, path: Path) -> "Federation":
        data = _read_json(path)
        top = _Fields(path, data)
        if top.get("version", int) != 1:
            raise ConfigInvalid(f"{path}: version: only version 1 is understood")
        raw_members = top.get("members", list)
        if not 1 <= len(raw_members) <= 15:
            raise ConfigInvalid(f"{path}: members: need 1 to 15 members")
        members = []
        for i, raw in enumerate(raw_members):
            if not isinstance(raw, dict):
                raise ConfigInvalid(f"{path}: members[{i}]: must be an object")
            f = _Fields(path, raw, f"members[{i}].")
            if f.get("index", int) != i:
                raise ConfigInvalid(f"{path}: members[{i}].index: members must be listed in index order")
            members.append(
                MemberInfo(
                    index=i,
                    name=f.get("name", str, f"member{i}"),
                    signing_pubkey=f.hex("signing_pubkey", 33),
                    identity_pubkey=f.hex("identity_pubkey", 32),
                    p2p=f.address("p2p"),
                    api=f.get("api", str, ""),
                )
            )
        chain = _Fields(path, top.get("chain", dict), "chain.")
        fed = cls(
            members=tuple(members),
            threshold=top.int_range("threshold", 1, len(members)),
            genesis_time=chain.int_range("genesis_time", 0, 2**32 - 1),
            block_interval=chain.get("block_interval", float, 60.0),
            round_timeout=chain.get("round_timeout", float, 10.0),
            initial_free_coins=chain.int_range("initial_free_coins", 0, 21_000_000 * 100_000_000, 0),
            initial_free_coins_script=chain.hex("initial_free_coins_script", default=""),
            peg=PegSettings.from_json(path, top.get("peg", dict)) if "peg" in data else None,
            exchanges=tuple(ExchangeInfo.from_json(path, e, i) for i, e in enumerate(top.get("exchanges", list, []))),
        )
        if len({e.id for e in fed.exchanges}) != len(fed.exchanges):
            raise ConfigInvalid(f"{path}: exchanges: ids must be unique")
        if len({e.api_pubkey for e in fed.exchanges}) != len(fed.exchanges):
            raise ConfigInvalid(f"{path}: exchanges: each exchange needs its own api_pubkey")
        try:
            params = fed.federation_params()
        except (ValueError, ConsensusError) as e:
            raise ConfigInvalid(f"{path}: members: {e}") from None
        if "signblockscript" in data and top.hex("signblockscript") != params.challenge:
            raise ConfigInvalid(f"{path}: signblockscript does not match the members' keys and threshold")
        if "chain_id" in data and top.hex("chain_id", 32) != fed.chain_id:
            raise ConfigInvalid(f"{path}: chain_id does not match the file's consensus fields")
        if fed.peg is not None and len(fed.peg.params.watchman_keys) != fed.n:
            raise ConfigInvalid(f"{path}: peg.watchman_keys: one per member ({fed.n}) expected")
        if fed.block_interval <= 0 or fed.round_timeout <= 0:
            raise ConfigInvalid(f"{path}: chain: block_interval and round_timeout must be positive")
        return fed

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


@dataclass(frozen=True)
class MemberKeys:
    signing_key: PrivateKey
    identity: SigningKey
    watchman_key: PrivateKey | None = None
    """The member's key in the fedpegscript (may differ from its block key)."""

    def __repr__(self) -> str:  # never print key material
        return f"MemberKeys(signing_pubkey={self.signing_key.public_key.format().hex()})"

    @classmethod
    def generate(cls) -> "MemberKeys":
        return cls(PrivateKey(os.urandom(32)), SigningKey(os.urandom(32)), PrivateKey(os.urandom(32)))

    def save(self, path: Path) -> None:
        data = {"signing_key": self.signing_key.secret.hex(), "identity_seed": bytes(self.identity).hex()}
        if self.watchman_key is not None:
            data["watchman_key"] = self.watchman_key.secret.hex()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: Path) -> "MemberKeys":
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise ConfigFileMissing(f"{path}: no such file") from None
        if mode & 0o077:
            raise KeyFileExposed(f"{path}: mode {mode:o} lets other users read private keys; chmod 600 it")
        f = _Fields(path, _read_json(path))
        try:
            signing = PrivateKey(f.hex("signing_key", 32))
        except ValueError:
            raise ConfigInvalid(f"{path}: signing_key: not a valid secp256k1 secret") from None
        watchman = None
        if "watchman_key" in f.data:
            try:
                watchman = PrivateKey(f.hex("watchman_key", 32))
            except ValueError:
                raise ConfigInvalid(f"{path}: watchman_key: not a valid secp256k1 secret") from None
        return cls(signing, SigningKey(f.hex("identity_seed", 32)), watchman)


@dataclass(frozen=True)
class MainchainRpc:
    """How to reach this member's own bitcoind (used by the peg)."""

    url: str
    cookie_file: Path | None = None
    user: str | None = None
    password_file: Path | None = None
    timeout: float = 30.0

    def to_json(self, base: Path) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "timeout": self.timeout}
        if self.cookie_file:
            out["cookie_file"] = os.path.relpath(self.cookie_file, base)
        if self.user:
            out["user"] = self.user
        if self.password_file:
            out["password_file"] = os.path.relpath(self.password_file, base)
        return out

    @classmethod
    def from_json(cls, path: Path, raw: dict[str, Any]) -> "MainchainRpc":
        f = _Fields(path, raw, "mainchain_rpc.")
        url = f.get("url", str)
        if not url.startswith(("http://", "https://")):
            raise ConfigInvalid(f"{path}: mainchain_rpc.url: must be an http(s) URL")
        cookie = f.get("cookie_file", str, "")
        user = f.get("user", str, "")
        password = f.get("password_file", str, "")
        if not cookie and not (user and password):
            raise ConfigInvalid(f"{path}: mainchain_rpc: give cookie_file, or user and password_file")
        timeout = f.get("timeout", float, 30.0)
        if timeout <= 0:
            raise ConfigInvalid(f"{path}: mainchain_rpc.timeout: must be positive")
        return cls(
            url=url,
            cookie_file=(path.parent / cookie).resolve() if cookie else None,
            user=user or None,
            password_file=(path.parent / password).resolve() if password else None,
            timeout=timeout,
        )


@dataclass(frozen=True)
class MemberConfig:
    path: Path
    member: int
    federation_file: Path
    keys_file: Path
    data_dir: Path
    database_url: str | None
    p2p_listen: tuple[str, int]
    api_listen: tuple[str, int]
    log_level: str
    peer_addresses: dict[int, tuple[str, int]] = field(default_factory=dict)
    """Where to dial a member, when not at the federation file's address
    (a proxy, a NAT, a test's fault-injecting link)."""
    mainchain_rpc: MainchainRpc | None = None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chain.sqlite'}"

    @classmethod
    def load(cls, path: Path) -> "MemberConfig":
        f = _Fields(path, _read_json(path))
        base = path.parent

        def rel(p: str) -> Path:
            return (base / p).resolve()

        level = f.get("log_level", str, "info")
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigInvalid(f"{path}: log_level: one of debug, info, warning, error")
        url = f.get("database_url", (str, type(None)), None)  # type: ignore[arg-type]
        raw_peers = f.get("peers", dict, {})
        peers: dict[int, tuple[str, int]] = {}
        for key in raw_peers:
            if not key.isdigit():
                raise ConfigInvalid(f"{path}: peers: keys are member indices, got {key!r}")
            peers[int(key)] = _Fields(path, raw_peers, "peers.").address(key)
        return cls(
            path=path,
            member=f.int_range("member", 0, 14),
            federation_file=rel(f.get("federation", str)),
            keys_file=rel(f.get("keys", str)),
            data_dir=rel(f.get("data_dir", str, ".")),
            database_url=url,
            p2p_listen=f.address("p2p_listen"),
            api_listen=f.address("api_listen"),
            log_level=level,
            peer_addresses=peers,
            mainchain_rpc=MainchainRpc.from_json(path, f.get("mainchain_rpc", dict))
            if "mainchain_rpc" in f.data
            else None,
        )

    def to_json(self) -> dict[str, Any]:
        base = self.path.parent.resolve()
        return {
            "member": self.member,
            "federation": os.path.relpath(self.federation_file, base),
            "keys": os.path.relpath(self.keys_file, base),
            "data_dir": os.path.relpath(self.data_dir, base),
            "database_url": self.database_url,
            "p2p_listen": f"{self.p2p_listen[0]}:{self.p2p_listen[1]}",
            "api_listen": f"{self.api_listen[0]}:{self.api_listen[1]}",
            "log_level": self.log_level,
            "peers": {str(i): f"{h}:{p}" for i, (h, p) in sorted(self.peer_addresses.items())},
            **({"mainchain_rpc": self.mainchain_rpc.to_json(base)} if self.mainchain_rpc else {}),
        }

    def save(self) -> None:
        self.path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
