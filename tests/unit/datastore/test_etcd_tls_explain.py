"""What a failed TLS handshake with etcd is called: the CA file, or the client certificate."""

from __future__ import annotations

import ssl

import httpx

from calico.datastore.config import EtcdConfig
from calico.datastore.etcd_tls import explain, tls_error

ENDPOINT = ("https://198.18.0.1:2379",)


def _verify_failed() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


def _alert(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, reason)
    error.reason = reason
    return error


def _wrapped(error: ssl.SSLError) -> httpx.ConnectError:
    """As httpx raises it: the SSL error is the cause of the transport error."""
    try:
        try:
            raise error
        except ssl.SSLError as exc:
            raise httpx.ConnectError(str(exc)) from exc
    except httpx.ConnectError as outer:
        return outer


def test_wrong_ca_names_the_ca_file() -> None:
    config = EtcdConfig(endpoints=ENDPOINT, ca_cert_file="/etc/calico/ca.pem")
    said = explain(_wrapped(_verify_failed()), config)
    assert said == (
        "TLS: etcd's server certificate is not trusted by the CA file /etc/calico/ca.pem:"
        " unable to get local issuer certificate"
    )


def test_no_ca_file_says_the_system_cas() -> None:
    said = explain(_wrapped(_verify_failed()), EtcdConfig(endpoints=ENDPOINT))
    assert said is not None and "the system CAs (no etcd CA file configured)" in said


def test_client_certificate_missing_or_refused() -> None:
    alert = _wrapped(_alert("SSLV3_ALERT_BAD_CERTIFICATE"))
    none = explain(alert, EtcdConfig(endpoints=ENDPOINT))
    assert none is not None and "requires a client certificate and none is configured" in none
    config = EtcdConfig(endpoints=ENDPOINT, cert_file="/c.pem", key_file="/k.pem")
    refused = explain(_wrapped(_alert("TLSV13_ALERT_CERTIFICATE_REQUIRED")), config)
    assert refused == (
        "TLS: etcd refused the client certificate /c.pem (TLSV13_ALERT_CERTIFICATE_REQUIRED)"
    )


def test_other_failures_are_not_tls() -> None:
    assert explain(httpx.ConnectError("connection refused"), EtcdConfig()) is None
    assert tls_error(ValueError("x")) is None
    other = explain(_wrapped(_alert("WRONG_VERSION_NUMBER")), EtcdConfig(endpoints=ENDPOINT))
    assert other == "TLS: handshake with etcd failed: WRONG_VERSION_NUMBER"
