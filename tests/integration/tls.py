"""Throwaway certificate authorities and certificates, made with ``openssl`` at test time.

Nothing here is a fixture: :func:`make_ca` and :meth:`CertificateAuthority.issue`
are plain factories that write PEM files into a directory the caller owns (pytest's
tmp dir), so a test can make as many CAs as it needs (a second CA is how a test
shows that a worker refuses a broker it was not told to trust).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Names a certificate for a broker or client on this machine answers to.
LOOPBACK_SAN = "IP:127.0.0.1,DNS:localhost"

_DAYS = "2"  # long enough for any test run, short enough to be obviously throwaway


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - Debian's base images ship it
        raise RuntimeError("openssl is not installed (apt-get install openssl)")
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [openssl, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _key(path: Path) -> Path:
    # RSA rather than EC: Kafka's PEM key store reads PKCS#8 RSA keys on every JDK.
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Issued:
    """A certificate and its unencrypted PKCS#8 private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA whose key stays in the test's directory."""

    name: str
    cert: Path
    key: Path

    def issue(self, directory: Path, name: str, *, san: str = LOOPBACK_SAN) -> Issued:
        """Sign a certificate for ``name`` (server and client use) with ``san`` names."""
        directory.mkdir(parents=True, exist_ok=True)
        key = _key(directory / f"{name}.key")
        csr = directory / f"{name}.csr"
        ext = directory / f"{name}.ext"
        cert = directory / f"{name}.pem"
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
        ext.write_text(
            f"subjectAltName={san}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", _DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return Issued(cert, key)


def make_ca(directory: Path, name: str = "test-ca") -> CertificateAuthority:
    """A new self-signed certificate authority in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _key(directory / f"{name}.key")
    cert = directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={name}", "-days", _DAYS,
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash", "-out", str(cert),
    )  # fmt: skip
    return CertificateAuthority(name, cert, key)


def broker_ssl_dir(directory: Path, ca: CertificateAuthority, client_ca: Path) -> Path:
    """A ``KAFKA_SSL_DIR`` for scripts/kafka-local: the broker's key store and trusted CAs.

    ``broker-keystore.pem`` holds the key, then the broker certificate and the CA
    (the chain a client verifies); ``ca.pem`` the CA that signs client certificates.
    """
    issued = ca.issue(directory, "broker")
    keystore = directory / "broker-keystore.pem"
    keystore.write_text(issued.key.read_text() + issued.cert.read_text() + ca.cert.read_text())
    keystore.chmod(0o600)
    shutil.copyfile(client_ca, directory / "ca.pem")
    return directory
