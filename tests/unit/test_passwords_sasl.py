"""Password hashes (ours and docker-mailserver's) and the SASL exchanges."""

from __future__ import annotations

import base64
import subprocess

import pytest

from postroom.accounts.passwords import hash_password, needs_rehash, verify_password
from postroom.errors import BadSyntax
from postroom.sasl import Challenge, Credentials, SaslAborted, SaslExchange


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_new_hashes_are_argon2id() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("{ARGON2ID}$argon2id$")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    assert not needs_rehash(stored)


def test_docker_mailserver_sha512_crypt_from_openssl() -> None:
    # openssl's SHA512-CRYPT is an independent implementation of the $6$ scheme that
    # doveadm pw -s SHA512-CRYPT (docker-mailserver's `setup email add`) writes.
    digest = subprocess.run(["openssl", "passwd", "-6", "-salt", "Ab3dEf9h", "secret"],
                            check=True, capture_output=True, text=True).stdout.strip()
    stored = "{SHA512-CRYPT}" + digest
    assert verify_password("secret", stored)
    assert not verify_password("Secret", stored)
    assert verify_password("secret", digest)  # bare crypt string
    assert needs_rehash(stored)


@pytest.mark.parametrize("stored", ["", "{SHA512-CRYPT}", "{ARGON2ID}garbage", "{MD5}abc",
                                    "plain"])
def test_malformed_hashes_never_match(stored: str) -> None:
    assert not verify_password("anything", stored)


def test_plain_with_initial_response() -> None:
    result = SaslExchange("plain").start(b64(b"\0user@example.test\0pw"))
    assert result == Credentials("user@example.test", "pw", "")


def test_plain_without_initial_response() -> None:
    exchange = SaslExchange("PLAIN")
    assert exchange.start(None) == Challenge("")
    assert exchange.step(b64(b"admin\0user\0pw")) == Credentials("user", "pw", "admin")


def test_login_two_steps() -> None:
    exchange = SaslExchange("LOGIN")
    first = exchange.start(None)
    assert isinstance(first, Challenge) and base64.b64decode(first.text) == b"Username:"
    second = exchange.step(b64(b"user"))
    assert isinstance(second, Challenge) and base64.b64decode(second.text) == b"Password:"
    assert exchange.step(b64("pässword".encode())) == Credentials("user", "pässword")


@pytest.mark.parametrize("response", ["!!!", b64(b"no-nuls"), b64(b"\0\0pw"), b64(b"\xff\0u\0p")])
def test_bad_plain_responses(response: str) -> None:
    with pytest.raises(BadSyntax):
        SaslExchange("PLAIN").step(response)


def test_abort_and_unknown_mechanism() -> None:
    with pytest.raises(SaslAborted):
        SaslExchange("LOGIN").step("*")
    with pytest.raises(BadSyntax):
        SaslExchange("CRAM-MD5")
    assert SaslExchange("LOGIN").start("=") == Challenge(b64(b"Password:"))
