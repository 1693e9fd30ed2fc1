"""Certificates for PayPal webhook tests: a root, an intermediate and a signing leaf.

Made with `cryptography` per test session, the way PayPal's own chain is shaped: the leaf
is named messageverificationcerts.sandbox.paypal.com and signed by an intermediate CA,
which the root signs. Tests trust only this root; variants (expired, wrong name,
self-signed) are what a forger or a stale cache could present.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

LEAF_NAME = "messageverificationcerts.sandbox.paypal.com"


def _key() -> rsa.RSAPrivateKey:
    # 2048 bits like PayPal's; generated once per bundle (a few ms each).
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kassa test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    not_before: datetime,
    not_after: datetime,
    dns: str | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class SigningBundle:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: rsa.RSAPrivateKey
    # The root and intermediate with their keys, to issue siblings under the same root.
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey, x509.Certificate, rsa.RSAPrivateKey]

    @property
    def chain_pem(self) -> bytes:
        """What PAYPAL-CERT-URL serves: the leaf, then its intermediate."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, self.intermediate)
        )

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: bytes) -> str:
        """Base64 SHA256withRSA signature, as in PAYPAL-TRANSMISSION-SIG."""
        raw = self.leaf_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()


def make_bundle(
    *,
    leaf_name: str = LEAF_NAME,
    expired: bool = False,
    self_signed: bool = False,
    root: tuple[x509.Certificate, rsa.RSAPrivateKey, x509.Certificate, rsa.RSAPrivateKey]
    | None = None,
) -> SigningBundle:
    """A fresh chain; `root` reuses another bundle's root and intermediate (and keys)."""
    now = datetime.now(UTC)
    if root is None:
        root_key, int_key = _key(), _key()
        root_cert = _cert(
            _name("Kassa Test Root CA"),
            root_key,
            _name("Kassa Test Root CA"),
            root_key,
            ca=True,
            not_before=now - timedelta(days=365),
            not_after=now + timedelta(days=3650),
        )
        int_cert = _cert(
            _name("Kassa Test Intermediate CA"),
            int_key,
            root_cert.subject,
            root_key,
            ca=True,
            not_before=now - timedelta(days=365),
            not_after=now + timedelta(days=1825),
        )
    else:
        root_cert, root_key, int_cert, int_key = root
    leaf_key = _key()
    window = (
        (now - timedelta(days=400), now - timedelta(days=1))
        if expired
        else (now - timedelta(days=1), now + timedelta(days=365))
    )
    if self_signed:
        leaf = _cert(
            _name(leaf_name),
            leaf_key,
            _name(leaf_name),
            leaf_key,
            ca=False,
            not_before=window[0],
            not_after=window[1],
            dns=leaf_name,
        )
    else:
        leaf = _cert(
            _name(leaf_name),
            leaf_key,
            int_cert.subject,
            int_key,
            ca=False,
            not_before=window[0],
            not_after=window[1],
            dns=leaf_name,
        )
    return SigningBundle(
        root_cert, int_cert, leaf, leaf_key, (root_cert, root_key, int_cert, int_key)
    )


def sibling(
    bundle: SigningBundle,
    *,
    leaf_name: str = LEAF_NAME,
    expired: bool = False,
    self_signed: bool = False,
) -> SigningBundle:
    """Another leaf under the same root (expired, another name, self-signed)."""
    return make_bundle(
        leaf_name=leaf_name, expired=expired, self_signed=self_signed, root=bundle.issuer
    )
