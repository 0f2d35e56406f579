"""A small X.509 PKI for one fleet: a CA, the broker's server certificate, client certificates.

Every key is EC P-256 (fast on a Raspberry Pi, accepted by every TLS stack mosquitto and paho
use). A client certificate's common name is the MQTT username: the broker's TLS listener runs
with ``use_identity_as_username true``, so the CN decides which ACL entries a client gets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet.errors import ConfigError

CA_DAYS = 3650
"""Validity of the CA certificate; leaf certificates never outlive it."""

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (write it with mode 0600)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the certificate, hex with colons (as ``openssl x509 -fingerprint`` prints it)."""
        return self.cert.fingerprint(hashes.SHA256()).hex(":").upper()


def subject_alt_name(host: str) -> x509.GeneralName:
    """The SAN entry for ``host``: an IP address or a DNS name; ConfigError for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not host or len(host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ConfigError(
            f"--host {host!r}: not an IP address or a DNS name (letters, digits and '-' in dot-separated labels of "
            "1-63 characters)"
        )
    return x509.DNSName(host.rstrip("."))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleet"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: dt.datetime, days: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(name: str, now: dt.datetime) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"{name} fleet CA")
    cert = (
        _builder(subject, subject, key.public_key(), now, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                False,
                False,
                False,
                False,
                False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue(ca: Issued, common_name: str, now: dt.datetime, days: int, hosts: tuple[str, ...] = ()) -> Issued:
    """A leaf certificate signed by ``ca``: a server certificate for ``hosts`` when given, else a client one."""
    key = ec.generate_private_key(ec.SECP256R1())
    days = min(days, (ca.cert.not_valid_after_utc - now).days)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name), ca.cert.subject, key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                True,
                False,
                False,
                False,
                False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([subject_alt_name(h) for h in hosts]), critical=False
        )
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))
