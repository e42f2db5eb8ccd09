from __future__ import annotations

import pytest

from anypod import errors, settings


def test_env_then_overrides() -> None:
    found = settings.from_env(
        {
            "ANYPOD_PORT": "9000",
            "ANYPOD_LEASE_SECONDS": "2.5",
            "ANYPOD_INSECURE": "true",
            "ANYPOD_API_KEYS": "a, b",
            "ANYPOD_DATABASE_URL": "sqlite:///x.db",
        },
        port=9100,
    )
    assert found.port == 9100 and found.lease_seconds == 2.5 and found.insecure
    assert found.api_keys == ("a", "b") and found.database_url == "sqlite:///x.db"


def test_bad_number_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="ANYPOD_PORT"):
        settings.from_env({"ANYPOD_PORT": "eighty"})
    with pytest.raises(errors.ConfigError, match="BATCH_SIZE='x'"):
        settings.from_env({"BATCH_SIZE": "x"})


def test_runpods_batch_variables_are_read_unprefixed() -> None:
    found = settings.from_env({"BATCH_SIZE": "4", "BATCH_TIMEOUT_MS": "12.5"})
    assert (found.batch_size, found.batch_timeout_ms) == (4, 12.5)
    assert settings.from_env({}).batch_size is None


def test_public_bind_needs_keys_or_insecure() -> None:
    with pytest.raises(errors.ConfigError, match="refusing"):
        settings.Settings(host="0.0.0.0").check_exposure()
    assert settings.Settings(host="0.0.0.0", insecure=True).check_exposure()
    assert settings.Settings(host="0.0.0.0", api_keys=("k",)).check_exposure() is None
    assert "open" in (settings.Settings().check_exposure() or "")
    assert settings.Settings().allow_private_webhooks
    assert not settings.Settings(host="0.0.0.0", insecure=True).allow_private_webhooks
