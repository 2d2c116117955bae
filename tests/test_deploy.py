"""Deployment files, checked without a Docker engine: every compose service
runs a real CLI invocation, every file it names is made by a documented step
(the `init` service), and no ports collide."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from functionary.cli import _parser, init_federation
from functionary.config import Federation, MemberConfig, MemberKeys

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_every_compose_command_is_a_real_cli_invocation():
    from regtest.__main__ import build_parser as regtest_parser

    services = _compose()["services"]
    assert {"mainchain", "init", "member0", "member1", "member2", "member3", "member4"} <= set(services)
    for name, svc in services.items():
        if name == "mainchain":
            assert svc["entrypoint"] == ["python", "-m", "regtest"]
            args = regtest_parser().parse_args(svc["command"])
            assert str(args.datadir) == "/data/mainchain" and args.rpcbind == "0.0.0.0"
            assert svc["ports"] == [f"{args.rpcport}:{args.rpcport}"]
            continue
        args = _parser().parse_args(svc["command"])  # argparse exits on anything it does not know
        assert args.command in ("init", "run"), name


def test_compose_files_are_made_by_the_init_service(tmp_path):
    services = _compose()["services"]
    init = _parser().parse_args(services["init"]["command"])
    assert init.out == "/data" and init.keep_existing
    from functionary.cli import PegOptions
    from functionary.config import MainchainRpc
    from regtest.__main__ import build_parser as regtest_parser

    chain = regtest_parser().parse_args(services["mainchain"]["command"])
    # Members find the mainchain by its service name and read the cookie it writes in its datadir.
    assert init.mainchain_rpc_url == f"http://mainchain:{chain.rpcport}"
    assert Path(init.mainchain_rpc_cookie).parent == chain.datadir
    # Run the init service's own command with /data mapped to a temp dir.
    init_federation(
        tmp_path,
        init.members,
        init.threshold,
        host=init.host,
        listen_host=init.listen_host,
        p2p_port=init.p2p_port,
        api_port=init.api_port,
        block_interval=init.block_interval,
        round_timeout=init.round_timeout,
        mainchain_rpc=MainchainRpc(url=init.mainchain_rpc_url, cookie_file=Path(init.mainchain_rpc_cookie)),
        peg=PegOptions(csv_delay=init.csv_delay, pegin_min_depth=init.pegin_min_depth),
    )
    fed = Federation.load(tmp_path / "federation.json")
    assert fed.peg is not None and fed.peg.params.pegin_min_depth == init.pegin_min_depth
    host_ports: list[str] = [services["mainchain"]["ports"][0].split(":")[0]]
    for name, svc in services.items():
        if name in ("init", "mainchain"):
            continue
        assert "federation:/data" in svc["volumes"], name
        assert svc["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "mainchain" in svc["depends_on"]
        args = _parser().parse_args(svc["command"])
        config_path = tmp_path / Path(args.config).relative_to("/data")
        cfg = MemberConfig.load(config_path)
        keys = MemberKeys.load(cfg.keys_file)
        assert keys.watchman_key is not None
        assert cfg.mainchain_rpc is not None and cfg.mainchain_rpc.url == init.mainchain_rpc_url
        assert cfg.mainchain_rpc.cookie_file == Path(init.mainchain_rpc_cookie)
        assert cfg.federation_file == (tmp_path / "federation.json").resolve()
        member = fed.members[cfg.member]
        assert name == f"member{cfg.member}"
        # Peers find each other by service name; the member binds all interfaces.
        assert member.p2p[0] == name and cfg.p2p_listen[0] == "0.0.0.0"
        (mapping,) = svc["ports"]
        host_port, container_port = mapping.split(":")
        assert int(container_port) == cfg.api_listen[1], name
        assert svc["environment"]["FUNCTIONARY_HEALTH_URL"].endswith(f":{cfg.api_listen[1]}")
        host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports)), "host ports collide"
    p2p = [m.p2p for m in fed.members]
    assert len(p2p) == len(set(p2p))


def test_dockerfile_is_slim_non_root_with_healthcheck():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/blocks/tip/height" in text
    for path in ("pyproject.toml", "README.md", "consensus", "confidential", "functionary"):
        assert (ROOT / path).exists(), path


def test_systemd_unit_runs_the_cli():
    unit = (ROOT / "deploy" / "functionary@.service").read_text()
    (exec_line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_line.removeprefix("ExecStart="))
    assert argv[0].endswith("/functionary")
    args = _parser().parse_args(argv[1:])
    assert args.command == "run" and args.config.endswith("/member.json")
    assert "User=functionary" in unit and "RestartPreventExitStatus=2 3" in unit


def test_production_example_loads_and_points_at_bitcoind():
    cfg = MemberConfig.load(ROOT / "deploy" / "production" / "member.json")
    assert cfg.database_url and cfg.database_url.startswith("postgresql+psycopg://")
    assert cfg.mainchain_rpc is not None and cfg.mainchain_rpc.url.startswith("http://")
    assert cfg.mainchain_rpc.cookie_file is not None


@pytest.mark.parametrize(
    "body, reason",
    [
        ("{", "ConfigSyntax"),
        ("[]", "ConfigInvalid"),
        ('{"member": 0}', "ConfigInvalid"),
        ('{"member": "x", "federation": "f", "keys": "k", "p2p_listen": "a:1", "api_listen": "a:2"}', "ConfigInvalid"),
        ('{"member": 0, "federation": "f", "keys": "k", "p2p_listen": "nope", "api_listen": "a:2"}', "ConfigInvalid"),
        (
            '{"member": 0, "federation": "f", "keys": "k", "p2p_listen": "a:1", "api_listen": "a:2",'
            ' "mainchain_rpc": {"url": "ftp://x"}}',
            "ConfigInvalid",
        ),
    ],
)
def test_bad_member_config_is_a_typed_error(tmp_path, body, reason):
    from functionary.config import ConfigError

    path = tmp_path / "member.json"
    path.write_text(body)
    with pytest.raises(ConfigError) as e:
        MemberConfig.load(path)
    assert e.value.code == reason
    assert str(path) in str(e.value)


def test_exposed_key_file_is_refused(tmp_path):
    from functionary.config import KeyFileExposed

    MemberKeys.generate().save(tmp_path / "keys.json")
    assert MemberKeys.load(tmp_path / "keys.json")
    (tmp_path / "keys.json").chmod(0o644)
    with pytest.raises(KeyFileExposed):
        MemberKeys.load(tmp_path / "keys.json")
