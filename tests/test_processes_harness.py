"""The process harness itself (tests/federation.py), without starting members:
its log parsing, and that each teardown invariant fires on a log that breaks it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.federation import LogFollower, ProcessFederation, free_ports, parse_log_line

SIG = "ts=2026-11-25T12:00:0{s}.000Z level=info member={i} event=signature_sent height={h} hash={bh} round=0"
COMMIT = "ts=2026-11-25T12:00:0{s}.000Z level=info member={i} event=commit height={h} hash={bh} signers=0,1 txs=1"


def test_parse_log_line_fields_quotes_and_time() -> None:
    line = parse_log_line(
        2, 'ts=2026-11-25T12:00:01.250Z level=warning member=2 event=rejected peer=3 detail="a \\"b\\" c=d" x='
    )
    assert line is not None
    assert line.event == "rejected"
    assert line.num("peer") == 3
    assert line.fields["detail"] == 'a "b" c=d'
    assert line.fields["x"] == ""
    assert line.ts == pytest.approx(1795608001.25)
    assert parse_log_line(0, "functionary: ConfigSyntax: bad") is None
    assert parse_log_line(0, "# harness: start member=0") is None


def test_log_follower_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("old\n")
    f = LogFollower(path, path.stat().st_size)
    assert f.poll() == []
    with open(path, "a") as out:
        out.write("one\ntw")
    assert f.poll() == ["one"]
    with open(path, "a") as out:
        out.write("o\n")
    assert f.poll() == ["two"]


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(12)
    assert len(set(ports)) == 12
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[ProcessFederation]:
    with ProcessFederation(tmp_path / "fed", 3, 2, allow_log=[r"event=refuse_to_sign reason=CorruptDatabase"]) as f:
        yield f


def _write(fed: ProcessFederation, i: int, *lines: str) -> None:
    with open(fed.members[i].log_path, "a") as f:
        f.write("\n".join(lines) + "\n")


def test_clean_logs_have_no_problems(fed: ProcessFederation) -> None:
    a, b = "aa" * 32, "bb" * 32
    _write(fed, 0, SIG.format(s=1, i=0, h=1, bh=a), SIG.format(s=2, i=0, h=1, bh=a), COMMIT.format(s=3, i=0, h=1, bh=a))
    _write(fed, 1, COMMIT.format(s=3, i=1, h=1, bh=a), SIG.format(s=4, i=1, h=2, bh=b))
    _write(fed, 2, "ts=2026-11-25T12:00:05.000Z level=error member=2 event=refuse_to_sign reason=CorruptDatabase")
    assert fed.check_invariants() == []
    assert fed.signatures_sent(0) == [(1, a, 0), (1, a, 0)]
    assert fed.commits(1) == {1: a}


def test_each_invariant_fires(fed: ProcessFederation) -> None:
    a, b = "aa" * 32, "bb" * 32
    _write(fed, 0, SIG.format(s=1, i=0, h=5, bh=a), SIG.format(s=2, i=0, h=5, bh=b))
    _write(fed, 1, COMMIT.format(s=1, i=1, h=3, bh=a), "Traceback (most recent call last):")
    _write(
        fed,
        2,
        COMMIT.format(s=1, i=2, h=3, bh=b),
        "ts=2026-11-25T12:00:02.000Z level=warning member=2 event=misbehaviour peer=0 reason=SignedTwoBlocks",
        "ts=2026-11-25T12:00:03.000Z level=error member=2 event=handler_error peer=1",
    )
    problems = "\n".join(fed.check_invariants())
    assert "member 0 sent signatures for two blocks at height 5" in problems
    assert "fork at height 3" in problems
    assert "member 1 logged: Traceback" in problems
    assert "event=misbehaviour" in problems
    assert "event=handler_error" in problems
    with pytest.raises(AssertionError, match="teardown invariants failed"):
        fed.assert_invariants()


def test_partition_needs_proxies_and_whole_groups(tmp_path: Path, fed: ProcessFederation) -> None:
    with pytest.raises(RuntimeError, match="without proxies"):
        fed.partition([[0, 1], [2]])
    with ProcessFederation(tmp_path / "proxied", 3, 2, proxies=True) as p:
        assert sorted(p.links) == [(0, 1), (0, 2), (1, 2)]
        # Member i dials j > i through the link's proxy, per its config.
        assert p.config(0).peer_addresses[2] == ("127.0.0.1", p.links[(0, 2)])
        assert 0 not in p.config(1).peer_addresses
        with pytest.raises(ValueError, match="cover"):
            p.partition([[0], [1]])
        p.partition([[0, 1], [2]])
        assert p.partitioned == {(0, 2), (1, 2)}
        p.heal()
        assert p.partitioned == set()
