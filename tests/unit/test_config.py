"""The env-file contract: discovery order, docker-mailserver names, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.config import ConfigError, check_serve_files, load_config


def write(tmp_path: Path, text: str, name: str = "postroom.env") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_config(None, {})
    assert loaded.source is None
    config = loaded.config
    assert (config.smtp_port, config.submission_port, config.submissions_port) == (25, 587, 465)
    assert (config.imap_port, config.imaps_port, config.pop3_port, config.pop3s_port) == (
        143, 993, 110, 995)
    assert config.message_size_limit == 10240000
    assert config.spoof_protection is True
    assert config.queue_lifetime == 5 * 86400
    assert config.outbound_smtp_port == 25
    assert config.trusted_networks == []


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "SMTP_PORT=1001\n")
    env_file = write(tmp_path, "SMTP_PORT=1002\n", "from-env.env")
    explicit = write(tmp_path, "SMTP_PORT=1003\n", "explicit.env")
    assert load_config(None, {}).config.smtp_port == 1001
    assert load_config(None, {"POSTROOM_CONFIG": str(env_file)}).config.smtp_port == 1002
    assert load_config(explicit, {"POSTROOM_CONFIG": str(env_file)}).config.smtp_port == 1003


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "SMTP_PORT=1001\n")
    assert load_config(path, {"SMTP_PORT": "2002"}).config.smtp_port == 2002


def test_docker_mailserver_file_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "OVERRIDE_HOSTNAME=mail.example.com\nTZ=Asia/Shanghai\nSSL_TYPE=\nENABLE_POP3=\n"
        "ENABLE_AMAVIS=0\nPOSTFIX_MESSAGE_SIZE_LIMIT=\nDEFAULT_RELAY_HOST=[relay.example.net]:2525\n"
        "TRUSTED_NETWORKS=10.0.0.0/8, 192.168.1.0/24\nDNS_NAMESERVERS=127.0.0.1:5353 [::1]:53\n"
        "SOMETHING_ELSE=1\n"))
    loaded = load_config(path, {})
    config = loaded.config
    assert config.hostname == "mail.example.com"
    assert config.timezone == "Asia/Shanghai"
    assert config.enable_pop3 is True  # empty means default
    assert config.message_size_limit == 10240000
    relay = config.relay
    assert relay is not None and (relay.host, relay.port) == ("relay.example.net", 2525)
    assert [str(n) for n in config.networks] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert [(n.host, n.port) for n in config.nameservers] == [("127.0.0.1", 5353), ("::1", 53)]
    assert any("ENABLE_AMAVIS" in w for w in loaded.warnings)  # accepted, not used
    assert any("unknown key SOMETHING_ELSE" in w for w in loaded.warnings)


@pytest.mark.parametrize(("line", "key"), [
    ("SMTP_PORT=99999", "SMTP_PORT"),
    ("IMAP_PORT=imap", "IMAP_PORT"),
    ("SSL_TYPE=bogus", "SSL_TYPE"),
    ("ENABLE_POP3=maybe", "ENABLE_POP3"),
    ("TRUSTED_NETWORKS=10.0.0.0/33", "TRUSTED_NETWORKS"),
    ("DNS_NAMESERVERS=127.0.0.1:0", "DNS_NAMESERVERS"),
    ("QUEUE_LIFETIME=soon", "QUEUE_LIFETIME"),
    ("TZ=Mars/Olympus", "TZ"),
    ("OVERRIDE_HOSTNAME=not a host", "OVERRIDE_HOSTNAME"),
    ("LISTEN_ADDRESS=localhost", "LISTEN_ADDRESS"),
])
def test_bad_values_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, line + "\n"), {})
    assert str(caught.value).startswith(f"config: {key}:")
    assert "\n" not in str(caught.value)


def test_manual_tls_needs_existing_files(tmp_path: Path) -> None:
    path = write(tmp_path, f"SSL_TYPE=manual\nSSL_CERT_PATH={tmp_path}/missing.crt\n"
                           f"SSL_KEY_PATH={tmp_path}/missing.key\n")
    config = load_config(path, {}).config
    with pytest.raises(ConfigError, match="SSL_CERT_PATH"):
        check_serve_files(config)
    no_paths = load_config(write(tmp_path, "SSL_TYPE=manual\n", "b.env"), {}).config
    with pytest.raises(ConfigError, match="SSL_CERT_PATH: required"):
        check_serve_files(no_paths)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.env", {})


def test_durations(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "QUEUE_LIFETIME=2h\n"), {}).config.queue_lifetime == 7200
