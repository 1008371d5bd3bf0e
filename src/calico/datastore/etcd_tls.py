"""TLS towards etcd: the client's SSL context, and what a failed handshake means in words.

A bare `CERTIFICATE_VERIFY_FAILED` or `sslv3 alert bad certificate` does not tell an operator
which file to fix; `explain` names the CA file (wrong CA) or the client certificate (none, or
one etcd does not trust). A TLS failure also means etcd never read the request, so a write that
failed this way surely did not happen (the gateway may say so, and try the next endpoint).
"""

from __future__ import annotations

import ssl

from calico.datastore.api import Backend, DatastoreError, DatastoreTlsError
from calico.datastore.config import EtcdConfig

# OpenSSL alert reasons a server sends when it rejects (or misses) the client's certificate.
_CLIENT_REJECTED = ("BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")


def ssl_context(config: EtcdConfig) -> ssl.SSLContext:
    """Only https endpoints use this; the files are loaded now so a typo fails at start-up.
    Without one, a context that trusts nothing: httpx's default would load the system CA
    bundle (~30 ms per transport, a tenth of a CNI plugin's run) for connections never made."""
    if not any(endpoint.startswith("https://") for endpoint in config.endpoints):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context = ssl.create_default_context(cafile=config.ca_cert_file)
        if config.cert_file and config.key_file:
            context.load_cert_chain(config.cert_file, config.key_file)
    except OSError as exc:  # includes ssl.SSLError
        raise ValueError(f"etcd TLS files unusable: {exc}") from exc
    return context


def tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The SSL error somewhere in exc's chain of causes, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def explain(exc: BaseException, config: EtcdConfig) -> str | None:
    """One clear sentence for a TLS failure (None when exc is not one)."""
    error = tls_error(exc)
    if error is None:
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        ca = config.ca_cert_file
        trust = f"the CA file {ca}" if ca else "the system CAs (no etcd CA file configured)"
        why = error.verify_message or error.reason
        return f"TLS: etcd's server certificate is not trusted by {trust}: {why}"
    reason = error.reason or str(error)
    if any(name in reason for name in _CLIENT_REJECTED):
        if config.cert_file is None:
            return f"TLS: etcd requires a client certificate and none is configured ({reason})"
        return f"TLS: etcd refused the client certificate {config.cert_file} ({reason})"
    return f"TLS: handshake with etcd failed: {reason}"


def refuse_bad_tls(backend: Backend) -> None:
    """For daemons that otherwise wait out an unreachable etcd: one read now, so a TLS
    misconfiguration (DatastoreTlsError) stops them at start-up with its clear message.
    Other failures are left to the daemon's own retries."""
    try:
        backend.get("/calico/")
    except DatastoreTlsError:
        raise
    except DatastoreError:
        return  # etcd down or slow: the daemon's own retries deal with that
