"""`lifecycle doctor` through the real command line, against a DNS server of the test's
own on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.cli import main
from tests.deliver.test_doctor import DOMAIN, RELAY, DnsServer, Zone, good_zone, pem, private_key


@pytest.fixture(scope="module")
def dkim_key() -> rsa.RSAPrivateKey:
    return private_key()


@pytest.fixture
def config(project_dir: Path, dkim_key: rsa.RSAPrivateKey) -> Path:
    """The shipped config sending through RELAY, signing as DOMAIN, tracking on https."""
    (project_dir / "dkim.pem").write_bytes(pem(dkim_key))
    path = project_dir / "config.yaml"
    text = path.read_text()
    text = text.replace("  smtp:\n    host: 127.0.0.1\n", f"  smtp:\n    host: {RELAY}\n")
    text = text.replace(
        "  frequency_cap: {max: 3, per: 7d}\n",
        "  frequency_cap: {max: 3, per: 7d}\n"
        f"  dkim: {{domain: {DOMAIN}, selector: mail, key_file: dkim.pem}}\n"
        f"  bounce_address: bounce@{DOMAIN}\n",
    )
    text = text.replace("base_url: http://127.0.0.1:8000", f"base_url: https://t.{DOMAIN}")
    path.write_text(text)
    return path


def doctor(config: Path, zone: Zone, *args: str) -> tuple[int, str]:
    with DnsServer(zone).running() as server:
        nameserver = f"127.0.0.1:{server.port}"
        result = CliRunner().invoke(
            main, ["doctor", "--nameserver", nameserver, "--config", str(config), *args]
        )
    return result.exit_code, result.output


def test_all_good_exits_0_with_json(config: Path, dkim_key: rsa.RSAPrivateKey) -> None:
    code, out = doctor(config, good_zone(dkim_key), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    assert [(f["check"], f["verdict"]) for f in report["findings"]] == [
        ("spf", "ok"),
        ("dkim", "ok"),
        ("dmarc", "ok"),
        ("alignment", "ok"),
        ("tracking", "ok"),
    ]


def test_a_missing_record_exits_1_and_shows_the_record_to_publish(
    config: Path, dkim_key: rsa.RSAPrivateKey
) -> None:
    zone = good_zone(dkim_key)
    del zone[f"_dmarc.{DOMAIN}"]
    code, out = doctor(config, zone)
    assert code == 1, out
    assert f"FAIL dmarc     _dmarc.{DOMAIN}: no DMARC record" in out
    publish = f'publish   _dmarc.{DOMAIN}. TXT "v=DMARC1; p=none; rua=mailto:help@{DOMAIN}"'
    assert publish in out
    assert out.rstrip().endswith("1 failed, 0 warnings")


def test_json_lists_the_record_to_publish(config: Path, dkim_key: rsa.RSAPrivateKey) -> None:
    zone = good_zone(dkim_key)
    zone[DOMAIN] = []
    code, out = doctor(config, zone, "--json")
    assert code == 1, out
    spf = json.loads(out)["findings"][0]
    assert spf["verdict"] == "fail"
    assert spf["publish"] == {"name": DOMAIN, "type": "TXT", "value": f"v=spf1 a:{RELAY} ~all"}


def test_the_demo_config_warns_but_passes_what_it_can(
    project_dir: Path, dkim_key: rsa.RSAPrivateKey
) -> None:
    """The shipped config: a relay on this machine, no DKIM, tracking on http://127.0.0.1."""
    code, out = doctor(project_dir / "config.yaml", good_zone(dkim_key))
    assert code == 0, out
    assert (
        "warn tracking  http://127.0.0.1:8000: http on this machine: fine for the demo only" in out
    )


@pytest.mark.parametrize("nameserver", ["dns.example", "127.0.0.1:70000"])
def test_a_nameserver_that_is_not_an_address_is_a_usage_error(
    config: Path, nameserver: str
) -> None:
    result = CliRunner().invoke(
        main, ["doctor", "--nameserver", nameserver, "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--nameserver'" in result.output
