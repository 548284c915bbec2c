"""Per-key validation: a bad value warns and falls back; required settings are reported."""

import pytest

from stash2plex.settings.config import build_config


def test_absent_settings_mean_defaults_and_required_ones_are_missing():
    config = build_config({})
    assert config.missing == ("plex_url", "plex_token")
    assert config.plex_timeout == 30.0


def test_one_bad_value_warns_names_the_key_and_keeps_the_rest():
    config = build_config(
        {
            "plex_url": "localhost:32400",
            "plex_token": "tok-123456",
            "path_map": "/a -> /b",
            "plex_library": "Movies, Clips",
        }
    )
    assert config.plex_url == ""
    assert config.plex_token == "tok-123456"
    assert config.plex_library == ("Movies", "Clips")
    assert config.path_map == ()
    assert any(
        w.startswith("setting Plex URL (plex_url)") and "http://" in w for w in config.warnings
    )
    assert any(
        w.startswith("setting ") and "(path_map)" in w and "/a -> /b" in w for w in config.warnings
    )


def test_secret_values_never_appear_in_warnings():
    config = build_config({"plex_timeout": "soon", "plex_token": "tok-123456"})
    assert all("tok-123456" not in w for w in config.warnings)
    assert config.secrets() == ("tok-123456",)


def test_numbers_are_range_checked():
    assert build_config({"plex_timeout": 500}).plex_timeout == 30.0
    assert build_config({"plex_timeout": "12"}).plex_timeout == 12.0


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.2:32400/library/metadata/5?X-Plex-Token=aBcDeFgH12345",
        "http://10.0.0.2:32400?X-Plex-Token=aBcDeFgH12345",
        "http://plex:aBcDeFgH12345@10.0.0.2:32400",
        "http://10.0.0.2:32400/;X-Plex-Token=aBcDeFgH12345",
        "http://10.0.0.2:32400/%3FX-Plex-Token%3DaBcDeFgH12345",
    ],
)
def test_a_plex_url_carrying_the_token_is_refused_without_showing_it(url):
    # Copied from an item's XML view in Plex Web, the address carries the token.
    config = build_config({"plex_url": url, "plex_token": "other"})
    problem = config.invalid["plex_url"]
    assert "aBcDeFgH12345" not in problem and "aBcDeFgH12345" not in " ".join(config.warnings)
    assert "http://10.0.0.2:32400," in problem and "Plex token (plex_token)" in problem
