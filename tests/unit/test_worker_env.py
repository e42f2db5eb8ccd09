"""``anypod worker-env`` prints a file that sh, ``docker --env-file`` and ``env $(cat f)`` all
read the same way, with the SDK's ``$ID`` job-id placeholder kept literal (issue 8, item 12)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anypod import errors
from anypod.cli import app
from anypod.protocols.runpod import worker_env as we

EP = "whisper"
WID = "gpu-host.1_a"
GPU = "NVIDIA H100 80GB HBM3 $HOME 'q' \"d\" ~x #c & ; *?[x] é"
GPU_QUERY = "NVIDIA+H100+80GB+HBM3+%24HOME+%27q%27+%22d%22+%7Ex+%23c+%26+%3B+%2A%3F%5Bx%5D+%C3%A9"


def run_worker_env(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app,
        ["worker-env", "--database", f"sqlite:///{tmp_path / 'anypod.db'}", *args],
    )
    return result.exit_code, result.stdout, result.stderr


def docker_env_file(text: str, *, trim_quotes: bool) -> dict[str, str]:
    """docker/cli ``pkg/kvfile`` (``--env-file``), line by line: BOM dropped from the first
    line, leading whitespace trimmed, blank and ``#`` lines skipped, split on the first ``=``,
    no expansion. Older releases keep the value as is; newer ones drop one pair of matching
    surrounding quotes (``trim_quotes``)."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        if number == 1:
            raw = raw.removeprefix("\ufeff")
        line = raw.removesuffix("\r").lstrip()  # bufio.ScanLines drops "\r"; unicode.IsSpace
        if not line or line[0] == "#":
            continue
        key, has_value, value = line.partition("=")
        assert key, f"docker: no variable name on line {line!r}"
        assert not any(c in key for c in " \t"), f"docker: variable {key!r} contains whitespaces"
        assert has_value, f"docker would look {key!r} up in its own environment"
        if trim_quotes and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def shell_env(cwd: Path, script: str, shell: str = "sh") -> dict[str, str]:
    """``env`` as printed by ``script`` run in ``shell`` with an almost empty environment."""
    out = subprocess.run(
        [shell, "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def sh_sourced(cwd: Path) -> dict[str, str]:
    return shell_env(cwd, "set -a; . ./worker.env; set +a; env")


def bash_sourced(cwd: Path) -> dict[str, str]:
    return shell_env(cwd, "set -a; . ./worker.env; set +a; env", "bash")


def env_cat(cwd: Path) -> dict[str, str]:
    return shell_env(cwd, "env $(cat worker.env) env")


def docker_plain(cwd: Path) -> dict[str, str]:
    return docker_env_file((cwd / "worker.env").read_text(), trim_quotes=False)


def docker_trimming(cwd: Path) -> dict[str, str]:
    return docker_env_file((cwd / "worker.env").read_text(), trim_quotes=True)


CONSUMERS = [sh_sourced, bash_sourced, env_cat, docker_plain, docker_trimming]


@pytest.mark.parametrize("consume", CONSUMERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "server",
    ["http://127.0.0.1:8000", "https://lb.internal:8443/anypod/", "http://[::1]:8000"],
)
def test_every_consumer_reads_the_urls_with_a_literal_job_id_placeholder(
    tmp_path: Path, consume: Callable[[Path], dict[str, str]], server: str
) -> None:
    code, out, err = run_worker_env(
        tmp_path, "--endpoint", EP, "--server", server, "--worker-id", WID, "--gpu", GPU
    )
    assert code == 0, err
    (tmp_path / "worker.env").write_text(out)
    got = consume(tmp_path)

    base = f"{server.rstrip('/')}/v2/{EP}"
    query = f"?gpu={GPU_QUERY}"
    assert got["RUNPOD_WEBHOOK_POST_OUTPUT"] == f"{base}/job-done/{WID}/$ID{query}"
    assert got["RUNPOD_WEBHOOK_POST_STREAM"] == f"{base}/job-stream/{WID}/$ID{query}"
    assert got["RUNPOD_WEBHOOK_GET_JOB"] == f"{base}/job-take/{WID}{query}"
    assert got["RUNPOD_WEBHOOK_PING"] == f"{base}/ping/{WID}{query}"
    assert got["RUNPOD_POD_ID"] == WID
    assert got["RUNPOD_AI_API_KEY"].startswith("apw_")
    expected = we.worker_env(
        server,
        EP,
        WID,
        got["RUNPOD_AI_API_KEY"],
        gpu=GPU,
        hostname=got["RUNPOD_POD_HOSTNAME"],
    )
    assert {k: v for k, v in got.items() if k.startswith("RUNPOD_")} == expected
    # what the SDK then does with the template (rp_http._handle_result)
    job_url = got["RUNPOD_WEBHOOK_POST_OUTPUT"].replace("$ID", "job-1") + "&isStream=false"
    assert job_url == f"{base}/job-done/{WID}/job-1{query}&isStream=false"


def test_stdout_is_only_assignments_and_the_explanation_goes_to_stderr(tmp_path: Path) -> None:
    code, out, err = run_worker_env(tmp_path, "--endpoint", EP, "--worker-id", WID)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "ID='$ID'"  # before any line that holds $ID
    for line in lines[1:]:
        key, _, value = line.partition("=")
        assert key.startswith("RUNPOD_")
        assert not any(c in value for c in " \t'\"#\\`;&|<>(){}*~!")
        assert "$" not in value.replace("$ID?", "")
    assert "$ID" in err and "ID=" in err


@pytest.mark.parametrize(
    "server",
    [
        "http://h:8000/$(reboot)",
        "http://h:8000/`id`",
        "http://h 8000",
        "http://h:8000/#x",
        "http://h:8000/a;b",
        "http://h:8000/a&b",
        "http://h:8000/~user",
        "http://h:8000/'x'",
        "http://h:8000/?q=1",
        "http://h:8000/*",
        "ftp://h:8000",
        "h:8000",
    ],
)
def test_a_server_url_with_shell_special_characters_is_refused(tmp_path: Path, server: str) -> None:
    code, out, err = run_worker_env(tmp_path, "--endpoint", EP, "--server", server)
    assert code != 0
    assert out == ""
    assert "--server" in err and repr(server) in err


@pytest.mark.parametrize("worker_id", ["a b", "$ID", "w;rm", "-w", "w/1", "x" * 129, ""])
def test_a_worker_id_that_is_not_a_plain_name_is_refused(tmp_path: Path, worker_id: str) -> None:
    code, out, err = run_worker_env(tmp_path, "--endpoint", EP, "--worker-id", worker_id)
    assert code != 0
    assert out == ""
    assert "worker id" in err


def test_an_invalid_endpoint_name_is_refused(tmp_path: Path) -> None:
    code, out, err = run_worker_env(tmp_path, "--endpoint", "a$b")
    assert code != 0 and out == "" and "endpoint name" in err


def test_the_gpu_label_is_url_quoted_completely() -> None:
    env = we.worker_env("http://h:1", EP, WID, "t", gpu=GPU, hostname="h")
    assert env["RUNPOD_WEBHOOK_PING"].endswith(f"?gpu={GPU_QUERY}")
    we.env_file(env)  # does not raise


@pytest.mark.parametrize(
    "value", ["a b", "a'b", 'a"b', "$HOME", "$IDx", "${ID}", "a#b", "~", "a\nb", "a\\b", "`x`"]
)
def test_env_file_refuses_a_value_a_consumer_would_change(value: str) -> None:
    with pytest.raises(errors.ConfigError):
        we.env_file({"RUNPOD_X": value})


def test_env_file_refuses_a_key_named_id() -> None:
    with pytest.raises(errors.ConfigError):
        we.env_file({"ID": "x"})
