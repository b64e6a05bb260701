"""The pure renewal plan of the self-managed certificate mode."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from webhook.tls import certs
from webhook.cluster.selfmanaged import CA_KEY, Settings, secret_update, split_pems

SETTINGS = Settings("tls", "kserve", ("ep.kserve.svc", "ep"), renew_before=dt.timedelta(days=30))
NOW = dt.datetime.now(dt.timezone.utc)


def cert_of(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_an_absent_secret_gets_a_ca_and_a_serving_pair_for_the_names() -> None:
    data = secret_update(None, SETTINGS)
    assert data is not None and set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    serving = cert_of(data["tls.crt"])
    serving.verify_directly_issued_by(cert_of(data["ca.crt"]))
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"ep.kserve.svc", "ep"}


def test_a_healthy_secret_is_left_alone() -> None:
    data = secret_update(None, SETTINGS)
    assert secret_update(data, SETTINGS) is None


def test_a_serving_certificate_close_to_expiry_is_renewed_by_the_same_ca() -> None:
    data = secret_update(None, SETTINGS)
    assert data is not None
    later = NOW + dt.timedelta(days=340)
    renewed = secret_update(data, SETTINGS, now=later)
    assert renewed is not None
    assert renewed["ca.crt"] == data["ca.crt"] and renewed[CA_KEY] == data[CA_KEY]
    assert renewed["tls.crt"] != data["tls.crt"]
    cert_of(renewed["tls.crt"]).verify_directly_issued_by(cert_of(data["ca.crt"]))


def test_a_ca_close_to_expiry_is_replaced_and_the_old_ca_stays_in_the_bundle() -> None:
    settings = Settings("tls", "kserve", ("ep",), renew_before=dt.timedelta(days=30), ca_days=90)
    data = secret_update(None, settings)
    assert data is not None
    later = NOW + dt.timedelta(days=45)
    renewed = secret_update(data, settings, now=later)
    assert renewed is not None
    bundle = split_pems(renewed["ca.crt"])
    assert len(bundle) == 2 and bundle[1] == data["ca.crt"]
    cert_of(renewed["tls.crt"]).verify_directly_issued_by(cert_of(bundle[0]))
    # once the old CA has expired it leaves the bundle
    much_later = NOW + dt.timedelta(days=100)
    pruned = secret_update(renewed, settings, now=much_later)
    assert pruned is not None and len(split_pems(pruned["ca.crt"])) == 1


def test_new_service_names_reissue_the_serving_certificate() -> None:
    data = secret_update(None, SETTINGS)
    assert data is not None
    more = Settings("tls", "kserve", ("ep.kserve.svc", "ep", "ep.kserve.svc.cluster.local"))
    renewed = secret_update(data, more)
    assert renewed is not None
    assert renewed["ca.crt"] == data["ca.crt"] and renewed["tls.crt"] != data["tls.crt"]


def test_damaged_secret_contents_are_replaced() -> None:
    data = secret_update(None, SETTINGS)
    assert data is not None
    other = certs.generate(["ep"])
    mixed = {**data, "tls.key": other.serving.key_pem}
    fixed = secret_update(mixed, SETTINGS)
    assert fixed is not None and fixed["tls.key"] != other.serving.key_pem
    assert secret_update({"ca.crt": b"junk"}, SETTINGS) is not None
