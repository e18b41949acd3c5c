"""register / verify / unregister / list round trips, and the config.toml they write (issue 7)."""

from __future__ import annotations

import asyncio
import os
import re
import tomllib
from pathlib import Path

from cli.execution import BIN

from .fake_gitlab import FakeGitLab


async def kuberunner(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_register_with_a_glrt_token_verify_list_unregister(gitlab: FakeGitLab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('# my runners\nconcurrent = 2\nlisten_address = ":9252"  # kept\n')
    created = gitlab.add_runner()
    status, out = await kuberunner(
        "register",
        "-c",
        str(config),
        "--url",
        gitlab.base_url + "/",
        "--token",
        created.token,
        "--name",
        "k8s",
        "--kubernetes-namespace",
        "ci",
        "--kubernetes-image",
        "alpine",
    )
    assert status == 0, out
    text = config.read_text()
    assert text.startswith('# my runners\nconcurrent = 2\nlisten_address = ":9252"  # kept\n')
    written = tomllib.loads(text)
    entry = written["runners"][0]
    assert {k: entry[k] for k in ("name", "url", "id", "token", "executor")} == {
        "name": "k8s",
        "url": gitlab.base_url + "/",
        "id": created.id,
        "token": created.token,
        "executor": "kubernetes",
    }
    assert entry["kubernetes"] == {"namespace": "ci", "image": "alpine"}
    assert config.stat().st_mode & 0o777 == 0o600
    system_id = (tmp_path / ".runner_system_id").read_text().strip()
    assert re.fullmatch(r"[sr]_[A-Za-z0-9]{12}", system_id)
    assert list(created.managers) == [system_id]
    assert created.managers[system_id]["features"]["cancel_gracefully"] is True

    status, out = await kuberunner("list", "-c", str(config))
    assert status == 0 and re.search(r"^k8s\tExecutor=kubernetes Token=glrt-\S+ URL=http", out, re.M), out
    assert created.token not in out

    status, out = await kuberunner("verify", "-c", str(config))
    assert (status, out) == (0, "Verifying runner k8s: is valid\n")

    status, out = await kuberunner("unregister", "-c", str(config), "--name", "k8s")
    assert status == 0, out
    assert created.managers == {}
    assert config.read_text() == '# my runners\nconcurrent = 2\nlisten_address = ":9252"  # kept\n'


async def test_legacy_registration_token_and_unregister_all(gitlab: FakeGitLab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    for name in ("one", "two"):
        status, out = await kuberunner(
            "register",
            "-c",
            str(config),
            "--url",
            gitlab.base_url,
            "--token",
            "glrtr-registration",
            "--name",
            name,
        )
        assert status == 0, out
    tokens = [r["token"] for r in tomllib.loads(config.read_text())["runners"]]
    assert len(tokens) == 2 and all(t in gitlab.runners for t in tokens)
    status, out = await kuberunner("unregister", "-c", str(config), "--all-runners")
    assert status == 0, out
    assert not any(t in gitlab.runners for t in tokens)
    assert not tomllib.loads(config.read_text()).get("runners")


async def test_rejected_tokens(gitlab: FakeGitLab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    status, out = await kuberunner(
        "register", "-c", str(config), "--url", gitlab.base_url, "--token", "glrt-nobody-knows"
    )
    assert status == 1
    assert out == (
        "ERROR: registering runner failed: verifying the runner: GitLab answered 403: 403 Forbidden\n"
    )
    assert not config.exists()
    runner = gitlab.add_runner()
    config.write_text(f'[[runners]]\nname = "gone"\nurl = "{gitlab.base_url}"\ntoken = "{runner.token}"\n')
    del gitlab.runners[runner.token]
    status, out = await kuberunner("verify", "-c", str(config))
    assert (status, out) == (1, "ERROR: Verifying runner gone: is removed\n")
    status, out = await kuberunner("verify", "-c", str(config), "--delete")
    assert status == 0 and "Removed 1 invalid runner(s)" in out
    assert not tomllib.loads(config.read_text()).get("runners")


async def kuberunner_env(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_token_comes_from_a_file_or_the_environment_not_only_argv(
    gitlab: FakeGitLab, tmp_path: Path
) -> None:
    from_file, from_env = gitlab.add_runner(), gitlab.add_runner()
    token_file = tmp_path / "token"
    token_file.write_text(from_file.token + "\n")
    config = tmp_path / "config.toml"
    base = ("register", "-c", str(config), "--url", gitlab.base_url)
    assert (await kuberunner(*base, "--token-file", str(token_file), "--name", "file"))[0] == 0
    assert (await kuberunner_env({"CI_SERVER_TOKEN": from_env.token}, *base, "--name", "env"))[0] == 0
    legacy = {"REGISTRATION_TOKEN": "glrtr-registration"}
    status, out = await kuberunner_env(legacy, *base, "--name", "legacy")
    assert status == 0, out
    entries = tomllib.loads(config.read_text())["runners"]
    assert [(e["name"], e["token"]) for e in entries[:2]] == [
        ("file", from_file.token),
        ("env", from_env.token),
    ]
    assert entries[2]["name"] == "legacy" and entries[2]["token"] in gitlab.runners


async def test_no_token_or_two_tokens_are_usage_errors(tmp_path: Path) -> None:
    base = ("register", "-c", str(tmp_path / "config.toml"), "--url", "http://127.0.0.1:1")
    clean = {k: v for k, v in os.environ.items() if k not in ("CI_SERVER_TOKEN", "REGISTRATION_TOKEN")}
    process = await asyncio.create_subprocess_exec(
        str(BIN), *base, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean
    )
    out, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().splitlines()[-1] == (
        "Error: no token: give --token-file PATH, $CI_SERVER_TOKEN or $REGISTRATION_TOKEN (or --token)"
    )
    (tmp_path / "empty").write_text("\n")
    status, out = await kuberunner(*base, "--token-file", str(tmp_path / "empty"))
    assert status == 2 and out.splitlines()[-1] == (
        f"Error: --token-file {tmp_path}/empty: expected one token on one line"
    )
    status, out = await kuberunner(*base, "--token-file", str(tmp_path / "nope"), "--token", "x")
    assert status == 2 and out.splitlines()[-1] == (
        "Error: give --token-file or --token (or $CI_SERVER_TOKEN), not both"
    )
