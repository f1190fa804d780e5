"""TLS as nsqd offers it: the server's certificate and key, its client-certificate policy, the oldest
protocol version it accepts, and the CA file that client certificates are checked against.

:func:`server_tls` builds the context factory once, at start-up, so that a missing or unreadable file
stops the server with one line instead of failing the first client that upgrades. The same factory
serves TCP clients that ask for ``tls_v1`` in IDENTIFY and the HTTPS listener.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.ssl import CertificateOptions, TLSVersion, platformTrust
from zope.interface import implementer

#: --tls-min-version (nsqtx.options.TLS_MIN_VERSIONS) as Twisted names them
MIN_VERSIONS = {"tls1.0": TLSVersion.TLSv1_0, "tls1.1": TLSVersion.TLSv1_1, "tls1.2": TLSVersion.TLSv1_2,
                "tls1.3": TLSVersion.TLSv1_3}


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """A context factory for the server side of nsqd's TLS (startTLS and listenSSL take it)."""

    def __init__(self, options: CertificateOptions, require_any_certificate: bool):
        self._options = options
        self._require_any = require_any_certificate
        self._context = None

    def getContext(self):
        if self._context is None:
            context = self._options.getContext()
            if self._require_any:
                # Go's RequireAnyClientCert: a certificate must come, whoever signed it
                context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
            self._context = context
        return self._context


def _accept_any(connection, certificate, error_number, depth, ok) -> bool:
    return True


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ValueError("failed to build TLS config - cannot read %s %s: %s" % (what, path, err.strerror or err))


def server_tls(options):
    """The context factory for nsqd's `options`, or None without --tls-cert and --tls-key; raises
    ValueError with nsqd's wording when the files do not make a TLS config."""
    if not options.tls_cert and not options.tls_key:
        return None
    certificate_pem, key_pem = _read(options.tls_cert, "certificate"), _read(options.tls_key, "key")
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as err:
        raise ValueError("failed to build TLS config - %s: %s" % (options.tls_cert, err))
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as err:
        raise ValueError("failed to build TLS config - %s: %s" % (options.tls_key, err))
    policy = options.tls_client_auth_policy
    ca_certs = []
    if options.tls_root_ca_file:
        ca_certs = _load_ca_file(options.tls_root_ca_file)
    verification = {}
    if policy == "require-verify":
        # as Go without ClientCAs, the system's roots when no CA file is given
        verification = dict(caCerts=ca_certs, verify=True) if ca_certs else dict(trustRoot=platformTrust())
        verification["requireCertificate"] = True
    certificate_options = CertificateOptions(privateKey=key, certificate=certificate,
                                             raiseMinimumTo=MIN_VERSIONS[options.tls_min_version], **verification)
    tls = ServerTLS(certificate_options, policy == "require")
    try:
        tls.getContext()
    except SSL.Error as err:
        raise ValueError("failed to build TLS config - %s" % (_ssl_error(err),))
    return tls


def _load_ca_file(path: str) -> list:
    """Every certificate in a PEM file; ValueError if there is none, as Go's AppendCertsFromPEM."""
    data = _read(path, "root CA file")
    certificates = []
    marker = b"-----END CERTIFICATE-----"
    for block in data.split(marker)[:-1]:
        try:
            certificates.append(crypto.X509.from_cryptography(x509.load_pem_x509_certificate(block + marker)))
        except ValueError:
            continue
    if not certificates:
        raise ValueError("failed to build TLS config - failed to append certificate to pool")
    return certificates


def _ssl_error(err) -> str:
    """OpenSSL's error stack in one line."""
    parts = [" ".join(str(item) for item in entry if item) for entry in (err.args[0] if err.args else [])
             if isinstance(entry, tuple)]
    return "; ".join(parts) or str(err)
