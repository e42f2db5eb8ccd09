"""Webhook configuration: the retry schedule and secrets, from the environment and from an
endpoint's table in ``anypod.toml``, as the runtime hands them to the sender."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from anypod import endpoints, errors, settings
from anypod.runtime import Runtime

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_the_default_schedule_is_svix_like() -> None:
    schedule = settings.from_env({}).webhook_schedule
    assert schedule == (
        0.0,
        5.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
    )  # at once … 10 h: 7 attempts


def test_the_schedule_comes_from_the_environment() -> None:
    env = {"ANYPOD_WEBHOOK_SCHEDULE": "0, 10,60.5"}
    assert settings.from_env(env).webhook_schedule == (0, 10, 60.5)
    assert settings.from_env({"ANYPOD_WEBHOOK_SCHEDULE": "0"}).webhook_schedule == (0,)


@pytest.mark.parametrize("raw", ["", "5,10", "0,-1", "0,x", "0,,5", "0,nan", "0,inf", "0,1e9"])
def test_a_bad_schedule_refuses_to_start_naming_the_variable(raw: str) -> None:
    with pytest.raises(errors.ConfigError, match="ANYPOD_WEBHOOK_SCHEDULE"):
        settings.from_env({"ANYPOD_WEBHOOK_SCHEDULE": raw})


def test_the_secret_stays_out_of_reprs() -> None:
    assert SECRET not in repr(settings.from_env({"ANYPOD_WEBHOOK_SECRET": SECRET}))


def config(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "anypod.toml"
    path.write_text(f"[endpoints.vip]\n{line}\n\n[endpoints.plain]\n")
    return path


def test_an_endpoint_may_have_its_own_secret(tmp_path: Path) -> None:
    vip, plain = endpoints.load_config(config(tmp_path, f'webhook_secret = "{SECRET}"'))
    assert vip.webhook_secret == SECRET and plain.webhook_secret is None
    assert SECRET not in repr(vip)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('webhook_secret = "whsec_not base64!"', "base64"),
        ('webhook_secret = ""', "empty"),
        ("webhook_secret = 5", "string"),
    ],
)
def test_a_bad_endpoint_secret_refuses_to_start(tmp_path: Path, line: str, says: str) -> None:
    with pytest.raises(errors.ConfigError, match=f"endpoints.vip.webhook_secret.*{says}"):
        endpoints.load_config(config(tmp_path, line))


def test_the_runtime_hands_schedule_and_secrets_to_the_sender(tmp_path: Path) -> None:
    env = {
        "ANYPOD_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ANYPOD_WEBHOOK_SCHEDULE": "0,1,2",
        "ANYPOD_WEBHOOK_SECRET": "raw-secret",
    }
    eps = endpoints.load_config(config(tmp_path, f'webhook_secret = "{SECRET}"'))
    policy = Runtime(settings.from_env(env), eps).webhooks.policy
    assert policy.schedule == (0.0, 1.0, 2.0) and policy.attempts == 3
    assert policy.secret == "raw-secret" and dict(policy.endpoint_secrets) == {"vip": SECRET}
    assert policy.allow_private  # a loopback bind: development mode
