"""A throwaway CA and a server certificate it signed for 127.0.0.1, made for one bench run: what the
servers of the TLS transports (``--tls-cert``, ``--tls-key``) present and nsqload verifies
(``NSQLOAD_TLS_CA``)."""
from __future__ import annotations

import datetime
import ipaddress
import os

from benchmarks.errors import BenchError


def make_certificates(directory: str) -> dict:
    """PEM files in `directory`: "ca" (the CA's certificate), "cert" and "key" (the server's, for
    127.0.0.1 and localhost, valid from a day ago for two days). EC P-256 keys, as
    tests/support.py makes them: the handshake is the same for every server."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as e:
        raise BenchError("the tls transports need the cryptography package in the bench's interpreter to make "
                         "a certificate (%s)" % e)
    now = datetime.datetime.now(datetime.timezone.utc)
    paths = {}

    def write(name, data):
        path = paths[name] = os.path.join(directory, name + ".pem")
        with open(path, "wb") as f:
            f.write(data)

    def issue(common_name, issuer_key=None, issuer_name=None, names=()):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=issuer_key is None, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return key, subject, builder.sign(issuer_key or key, hashes.SHA256())

    ca_key, ca_name, ca = issue("nsqtx bench CA")
    key, _, certificate = issue("localhost", ca_key, ca_name,
                                (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    write("ca", ca.public_bytes(serialization.Encoding.PEM))
    write("cert", certificate.public_bytes(serialization.Encoding.PEM))
    write("key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return paths
