"""Each message a person meets names the real cause, the fix and, for settings, where the value
came from; none carries a traceback or a secret. Connections are real: the Plex emulator over
http and https (certificates made by trustme), a closed port, a host name that cannot resolve.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess

import pytest
import trustme
from click.testing import CliRunner

from stash2plex import errors
from stash2plex.cli import main
from stash2plex.clients.plex import PlexClient
from stash2plex.clients.stash import StashClient, StashConnection
from stash2plex.sandbox.library import generate_library
from stash2plex.sandbox.plex_emulator import PlexEmulator
from stash2plex.sandbox.processes import reap_workers
from stash2plex.sandbox.stash_emulator import StashEmulator
from stash2plex.settings.config import build_config

from .sandbox import PLEX_TOKEN, sandbox

UTC = datetime.timezone.utc


def clean(message: str, *secrets: str) -> None:
    assert "Traceback" not in message and "Error(" not in message
    for secret in (PLEX_TOKEN, *secrets):
        assert secret not in message


def health_error(url: str, **options) -> errors.SyncError:
    health = PlexClient(url, PLEX_TOKEN, timeout=5, **options).health()
    assert not health.ok
    assert health.error is not None and health.error.message == health.detail
    clean(health.detail)
    return health.error


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_bundle(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def https_plex(cert, url_host: str = "127.0.0.1") -> PlexEmulator:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return PlexEmulator(token=PLEX_TOKEN, tls=context, url_host=url_host)


def test_https_against_a_plain_http_plex_says_to_use_http():
    with PlexEmulator(token=PLEX_TOKEN) as plex:
        url = plex.url.replace("http://", "https://")
        error = health_error(url)
    assert isinstance(error, errors.ConfigError) and error.setting == "plex_url"
    assert f"Plex at {url} does not speak https" in error.message
    assert f"set plex_url to {url.replace('https://', 'http://')}" in error.message


def test_a_self_signed_or_unknown_authority_certificate(ca):
    with https_plex(ca.issue_cert("127.0.0.1")) as plex:
        error = health_error(plex.url)
    assert isinstance(error, errors.ConfigError) and error.setting == "verify_tls"
    assert f"Plex's certificate at {plex.url} is self-signed" in error.message
    assert "switch off verify_tls" in error.message
    assert error.error_class == "config"  # a hold to fix, never an outage


def test_an_expired_certificate(ca, ca_bundle, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    cert = ca.issue_cert(
        "127.0.0.1",
        not_before=datetime.datetime(2019, 1, 1, tzinfo=UTC),
        not_after=datetime.datetime(2020, 1, 1, tzinfo=UTC),
    )
    with https_plex(cert) as plex:
        error = health_error(plex.url)
    assert error.setting == "verify_tls" and "has expired" in error.message
    assert "renew it" in error.message


def test_a_certificate_for_another_host_name(ca, ca_bundle, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    with https_plex(ca.issue_cert("plex.example"), url_host="localhost") as plex:
        error = health_error(plex.url)
    assert "is issued for another host name, not localhost" in error.message
    assert "plex.direct" in error.message and "verify_tls" in error.message


def test_a_ca_folder_in_requests_ca_bundle_is_trusted(ca, tmp_path, monkeypatch):
    # REQUESTS_CA_BUNDLE may name a folder of hashed certificates (`openssl rehash`).
    folder = tmp_path / "certs"
    folder.mkdir()
    pem = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (folder / f"{subject_hash}.0").write_bytes(pem.read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(folder))
    with https_plex(ca.issue_cert("127.0.0.1")) as plex:
        health = PlexClient(plex.url, PLEX_TOKEN, timeout=5).health()
    assert health.ok, health.detail


def test_verify_tls_off_holds_even_with_requests_ca_bundle_set(ca, tmp_path, monkeypatch):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))  # trusts some other authority only
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    with https_plex(ca.issue_cert("127.0.0.1")) as plex:
        assert not PlexClient(plex.url, PLEX_TOKEN, timeout=5).health().ok
        health = PlexClient(plex.url, PLEX_TOKEN, timeout=5, verify_tls=False).health()
    assert health.ok, health.detail


def test_a_closed_port_is_plex_down_naming_the_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    error = health_error(url)
    assert isinstance(error, errors.ServerDownError)
    assert f"Plex is not reachable at {url}: connection refused" in error.message
    assert f"is {port} its port?" in error.message


def test_an_unknown_host_names_the_host_name():
    error = health_error("http://no-such-plex.invalid:32400")
    assert isinstance(error, errors.ConfigError) and error.setting == "plex_url"
    assert "the host name no-such-plex.invalid in plex_url" in error.message
    assert "is unknown" in error.message and "spelling" in error.message


def test_a_pasted_plex_web_address_is_refused_in_words():
    config = build_config({"plex_url": "http://192.168.1.10:32400/web/index.html#!/"})
    problem = config.invalid["plex_url"]
    assert "not Plex Web's page: use http://192.168.1.10:32400" in problem
    clean(problem)


def test_a_url_that_is_not_plex_is_named(tmp_path):
    with PlexEmulator(token=PLEX_TOKEN) as plex:
        error = health_error(plex.url + "/somewhere/else")
    assert isinstance(error, errors.ConfigError)
    assert "does not answer like a Plex Media Server" in error.message


def test_stash_names_the_credential_it_refused():
    library = generate_library(3, seed=1)
    with StashEmulator(library, api_key="the-real-key-1234", require_auth=True) as stash:
        keyed = StashClient(StashConnection.from_url(stash.url, "wrong-key-5678"))
        with pytest.raises(errors.AuthError) as raised:
            keyed.version()
    assert "rejected the API key" in raised.value.message
    assert "Settings > Security" in raised.value.message
    assert "session cookie" not in raised.value.message
    clean(raised.value.message, "wrong-key-5678", "the-real-key-1234")


@pytest.mark.parametrize("command", [["health"], ["sync", "--all"]])
def test_a_wrong_token_from_the_environment_names_the_variable(tmp_path, monkeypatch, command):
    with sandbox(tmp_path, scenes=6, settings={}) as box:
        box.stash.plugin_settings = {}
        monkeypatch.setenv("STASH2PLEX_STASH_URL", box.stash.url)
        monkeypatch.setenv("STASH2PLEX_PLEX_URL", box.plex.url)
        monkeypatch.setenv("STASH2PLEX_PLEX_TOKEN", "wrong-token-0000")
        try:
            result = CliRunner().invoke(main, ["--data-dir", str(box.data_dir), *command])
        finally:
            reap_workers(box.data_dir)
    assert result.exit_code == 2, result.output
    assert "rejected the token" in result.output
    assert "environment variable STASH2PLEX_PLEX_TOKEN" in result.output
    assert "Settings > Plugins" not in result.output.split("rejected the token", 1)[1]
    clean(result.output, "wrong-token-0000")


def test_an_invalid_number_is_explained_in_words():
    config = build_config({"plex_timeout": "soon", "max_retries": 2.5, "enabled": "maybe"})
    text = "\n".join(config.warnings)
    assert "(plex_timeout) = 'soon' is not valid: expected a number from 1 to 300" in text
    assert "(max_retries) = '2.5' is not valid: expected a whole number from 1 to 50" in text
    assert "expected on or off" in text
    assert "could not convert" not in text and "float" not in text
    assert json.dumps(config.invalid) == "{}"


def test_diagnose_fixes_what_the_failure_names_not_a_generic_guess(ca, tmp_path):
    from stash2plex.operations.diagnose import diagnose
    from stash2plex.settings.config import setting_label
    from stash2plex.settings.sources import LocalSettings
    from stash2plex.store.db import Store

    # Plex over https with a self-signed certificate: the setting is verify_tls, not plex_url.
    with sandbox(tmp_path, scenes=3) as box, https_plex(ca.issue_cert("127.0.0.1")) as plex:
        box.stash.plugin_settings["plex_url"] = plex.url
        with box.store() as store:
            checks = {c.name: c for c in diagnose(store, box.stash.server_connection())}
    check = checks["Plex"]
    assert (check.ok, check.setting) == (False, "verify_tls")
    assert check.fix.startswith(f"Change {setting_label('verify_tls')}"), check.fix
    assert "Plex is running" not in check.fix

    # Stash refusing the API key the command line was given: the key, not "is Stash running".
    library = generate_library(3, seed=1)
    with StashEmulator(library, api_key="the-real-key-1234", require_auth=True) as stash:
        local = LocalSettings({"stash_url": stash.url, "stash_api_key": "wrong-key-5678"})
        with Store.open(tmp_path / "cli") as store:
            [check] = diagnose(store, local=local)
    assert (check.name, check.ok, check.setting) == ("Stash", False, "stash_api_key")
    assert "STASH2PLEX_STASH_API_KEY" in check.fix and "Stash is running" not in check.fix
    clean(check.detail + check.fix, "wrong-key-5678", "the-real-key-1234")
