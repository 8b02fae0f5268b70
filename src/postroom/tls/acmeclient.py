"""One ACME order, start to finish (RFC 8555 §7), with certbot's `acme` library.

Owns the account key (DATA_DIR/acme/account.key, EC P-256, 0600, made once), the account
registration, and an order for a list of names: a CSR for the kept key (a renewal) or a
fresh one, one challenge per pending authorization published on the `ChallengeBoard`, polling,
finalization, the chain. JWS, nonces and polling are the library's; this module only
chooses. It blocks (the library uses `requests`): callers run it in a thread.

Invariants: the only module that imports `acme` and `josepy`; a certificate key never
leaves this process except as the pair written by the caller; published challenges are
withdrawn when the order ends, whether it succeeded or not.

acme 5 dropped its TLS-ALPN-01 classes, so the two small classes RFC 8737 §3 needs (the
challenge and its empty response) are registered here when the library lacks them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import josepy as jose
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from postroom.tls.certfiles import write_atomically
from postroom.tls.challenges import ChallengeBoard

log = logging.getLogger(__name__)

ORDER_TIMEOUT = dt.timedelta(seconds=120)  # polling authorizations and finalization
NETWORK_TIMEOUT = 30  # seconds per HTTP request to the CA
USER_AGENT = "postroom"


class AcmeError(Exception):
    """An order failed; the message says at which step and why."""


class TlsAlpn01Response(challenges.KeyAuthorizationChallengeResponse):
    """RFC 8737 §3: the response is an empty JSON object (the key authorization that
    the parent class would send is left out by `to_partial_json`)."""

    typ = "tls-alpn-01"

    def to_partial_json(self) -> dict[str, Any]:
        return {}


class TlsAlpn01(challenges.KeyAuthorizationChallenge):
    response_cls = TlsAlpn01Response
    typ = response_cls.typ

    def validation(self, account_key: jose.JWK, **kwargs: Any) -> str:
        return self.key_authorization(account_key)


if "tls-alpn-01" not in challenges.Challenge.TYPES:
    challenges.Challenge.register(TlsAlpn01)
    challenges.ChallengeResponse.register(TlsAlpn01Response)


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    directory: str
    ca_bundle: Path | None  # trust for the CA's own HTTPS; None = the system store
    email: str
    challenge: str  # "http-01" | "tls-alpn-01"


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    chain_pem: bytes
    key_pem: bytes


def load_account_key(path: Path) -> jose.JWK:
    """The account key, made on first use (EC P-256: small JWS, ES256)."""
    if not path.is_file():
        key = ec.generate_private_key(ec.SECP256R1())
        write_atomically(path, key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()),
                         is_secret=True)
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise AcmeError(f"{path}: the ACME account key must be an EC key")
    return jose.JWKEC(key=private)


def make_csr(names: Sequence[str], key_pem: bytes | None = None) -> tuple[bytes, bytes]:
    """(CSR PEM, key PEM) for `names`; names[0] is the CN. The key is `key_pem` (a
    renewal keeps its key: TLSA 3 1 1 records stay true) or a fresh EC P-256 key."""
    key = _reused_key(key_pem) if key_pem else None
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


def _reused_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None:
    """The kept key, if it is one a CA signs for (else a fresh one is made)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        log.warning("acme: the certificate key is unreadable, making a new one: %s", error)
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else None


class AcmeClient:
    def __init__(self, settings: AcmeSettings, account_key_path: Path,
                 board: ChallengeBoard) -> None:
        self.settings = settings
        self.account_key_path = account_key_path
        self.board = board

    def order(self, names: Sequence[str], key_pem: bytes | None = None) -> IssuedCertificate:
        """Blocking. Raises AcmeError with the step that failed. `key_pem`: the key to
        keep (a renewal), else a new one is made."""
        try:
            key = load_account_key(self.account_key_path)
            acme = self._connect(key)
            csr_pem, key_pem = make_csr(names, key_pem)
            order = acme.new_order(csr_pem)
            try:
                self._answer_challenges(acme, key, order)
                deadline = dt.datetime.now() + ORDER_TIMEOUT  # the library compares naive
                order = acme.poll_and_finalize(order, deadline)
            finally:
                self.board.withdraw_all()
        except errors.ValidationError as error:
            raise AcmeError(f"validation failed: {_describe_failures(error)}") from error
        except (errors.Error, messages.Error, OSError, ValueError) as error:
            raise AcmeError(f"{type(error).__name__}: {error}") from error
        return IssuedCertificate(order.fullchain_pem.encode("ascii"), key_pem)

    def _connect(self, key: jose.JWK) -> client.ClientV2:
        verify: Any = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
        net = client.ClientNetwork(key, alg=jose.ES256, verify_ssl=verify,
                                   user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT)
        directory = client.ClientV2.get_directory(self.settings.directory, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(
            email=self.settings.email or None, terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as existing:  # RFC 8555 §7.3.1: the key's account
            net.account = messages.RegistrationResource(body=messages.Registration(),
                                                        uri=existing.location)
        return acme

    def _answer_challenges(self, acme: client.ClientV2, key: jose.JWK,
                           order: messages.OrderResource) -> None:
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # RFC 8555 §7.1.4: reused from an earlier order
            name = authorization.body.identifier.value
            challenge = self._pick(authorization)
            key_authorization = challenge.chall.key_authorization(key)
            if self.settings.challenge == "http-01":
                self.board.publish_http(challenge.chall.encode("token"), key_authorization)
            else:
                self.board.publish_alpn(name, key_authorization)
            acme.answer_challenge(challenge, challenge.chall.response(key))
            log.info("acme: %s challenge for %s answered", self.settings.challenge, name)

    def _pick(self, authorization: messages.AuthorizationResource) -> messages.ChallengeBody:
        for challenge in authorization.body.challenges:
            if challenge.chall.typ == self.settings.challenge:
                return challenge
        offered = ", ".join(c.chall.typ for c in authorization.body.challenges)
        raise AcmeError(f"{authorization.body.identifier.value}: the CA does not offer "
                        f"{self.settings.challenge} (only {offered})")


def _describe_failures(error: errors.ValidationError) -> str:
    parts = [f"{authorization.body.identifier.value}: {challenge.error}"
             for authorization in error.failed_authzrs
             for challenge in authorization.body.challenges if challenge.error is not None]
    return "; ".join(parts) or str(error)
