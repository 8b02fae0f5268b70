"""Issue 24: SRV answers through the Resolver contract (FakeResolver here; LiveResolver
against the test DNS server in tests/cli/test_dns_cli.py), and check_srv's verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.dns.fake import FakeResolver
from postroom.dns.resolver import NxDomain, SrvRecord
from postroom.selftest.records import ZoneInput, check_srv


def spec(tmp_path: Path, **ports: int) -> ZoneInput:
    return ZoneInput(domain="example.test", hostname="mail.example.test", ipv4=None,
                     ipv6=None, dkim_dir=tmp_path, postmaster="postmaster@example.test",
                     srv_ports={f"_{name}._tcp": port for name, port in ports.items()})


async def test_fake_resolver_answers_srv() -> None:
    resolver = FakeResolver({"_imaps._tcp.example.test": {"SRV": [
        "10 5 993 Mail.Example.Test.", SrvRecord(0, 0, 0, "")]}})
    assert sorted(await resolver.srv("_imaps._tcp.example.test")) == [
        SrvRecord(0, 0, 0, ""), SrvRecord(10, 5, 993, "mail.example.test")]
    assert await resolver.srv("example.test") == []  # exists (a descendant has records)
    with pytest.raises(NxDomain):
        await resolver.srv("_pop3s._tcp.example.test")


async def test_check_srv_compares_target_and_configured_port(tmp_path: Path) -> None:
    resolver = FakeResolver({
        "_imaps._tcp.example.test": {"SRV": ["0 1 993 mail.example.test"]},
        "_submissions._tcp.example.test": {"SRV": ["0 1 465 other.example.test"]},
    })
    findings = {f.record: f for f in await check_srv(
        resolver, spec(tmp_path, imaps=993, submissions=465, pop3s=995))}
    assert findings["SRV _imaps._tcp"].status == "ok"
    assert findings["SRV _submissions._tcp"].status == "wrong"
    assert findings["SRV _pop3s._tcp"].status == "missing"
    assert not any(f.is_failure for f in findings.values())  # optional records
    moved = await check_srv(resolver, spec(tmp_path, imaps=2993))
    assert [(f.record, f.status.value) for f in moved] == [("SRV _imaps._tcp", "wrong")]
    assert "port 2993" in moved[0].fix
