"""Throwaway certificates: a CA and the certificates it signs, made for one bench run (what the
servers of the TLS transports present, ``--tls-cert`` and ``--tls-key``, and nsqload verifies,
``NSQLOAD_TLS_CA``) or one test."""
from __future__ import annotations

import datetime
import ipaddress
import os

from benchmarks.errors import BenchError

#: the names a server certificate is for: the address every bench and test server listens on
SERVER_NAMES = ("localhost", "127.0.0.1")


class CertificateWriter:
    """Issues certificates into `directory` as PEM files, NAME.pem and NAME_key.pem, each valid from a
    day ago for two days, with an EC P-256 key (the handshake is the same for every server)."""

    def __init__(self, directory: str):
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError as e:
            raise BenchError("the tls transports need the cryptography package in the bench's interpreter to "
                             "make a certificate (%s)" % e)
        self._x509, self._hashes, self._serialization, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.directory = directory
        self.now = datetime.datetime.now(datetime.timezone.utc)
        #: name -> path of every file written
        self.paths = {}
        self._issuers = {}

    def issue(self, name: str, common_name: str, issuer: str = None, ca: bool = False, server: bool = False):
        """Write NAME's certificate and key: self-signed without an `issuer` (the name of a CA issued
        before), for SERVER_NAMES if `server`."""
        x509, serialization = self._x509, self._serialization
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(self._oid.COMMON_NAME, common_name)])
        issuer_key, issuer_name = self._issuers[issuer] if issuer else (key, subject)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(self.now - datetime.timedelta(days=1))
                   .not_valid_after(self.now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            names = [x509.DNSName(SERVER_NAMES[0]), x509.IPAddress(ipaddress.ip_address(SERVER_NAMES[1]))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if ca:
            self._issuers[name] = (key, subject)
        self._write(name, builder.sign(issuer_key, self._hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        self._write(name + "_key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))

    def _write(self, name: str, data: bytes) -> None:
        path = self.paths[name] = os.path.join(self.directory, name + ".pem")
        with open(path, "wb") as f:
            f.write(data)


def make_certificates(directory: str) -> dict:
    """PEM files in `directory`: "ca" (the CA's certificate), "cert" and "key" (the server's, for
    SERVER_NAMES)."""
    writer = CertificateWriter(directory)
    writer.issue("ca", "nsqtx bench CA", ca=True)
    writer.issue("server", "localhost", issuer="ca", server=True)
    return {"ca": writer.paths["ca"], "cert": writer.paths["server"], "key": writer.paths["server_key"]}
