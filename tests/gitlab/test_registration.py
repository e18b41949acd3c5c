"""register / verify / unregister / list round trips, and the config.toml they write (issue 7)."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

from cli.execution import BIN

from .fake_gitlab import FakeGitLab


async def kuberunner(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_register_with_a_glrt_token_verify_list_unregister(gitlab: FakeGitLab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# my runners\nconcurrent = 2\nlisten_address = \":9252\"  # kept\n")
    created = gitlab.add_runner()
    status, out = await kuberunner("register", "-c", str(config), "--url", gitlab.base_url + "/",
                                   "--token", created.token, "--name", "k8s",
                                   "--kubernetes-namespace", "ci", "--kubernetes-image", "alpine")
    assert status == 0, out
    text = config.read_text()
    assert text.startswith("# my runners\nconcurrent = 2\nlisten_address = \":9252\"  # kept\n")
    written = tomllib.loads(text)
    entry = written["runners"][0]
    assert {k: entry[k] for k in ("name", "url", "id", "token", "executor")} == {
        "name": "k8s", "url": gitlab.base_url + "/", "id": created.id, "token": created.token,
        "executor": "kubernetes"}
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
        status, out = await kuberunner("register", "-c", str(config), "--url", gitlab.base_url,
                                       "--token", "glrtr-registration", "--name", name)
        assert status == 0, out
    tokens = [r["token"] for r in tomllib.loads(config.read_text())["runners"]]
    assert len(tokens) == 2 and all(t in gitlab.runners for t in tokens)
    status, out = await kuberunner("unregister", "-c", str(config), "--all-runners")
    assert status == 0, out
    assert not any(t in gitlab.runners for t in tokens)
    assert not tomllib.loads(config.read_text()).get("runners")


async def test_rejected_tokens(gitlab: FakeGitLab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    status, out = await kuberunner("register", "-c", str(config), "--url", gitlab.base_url,
                                   "--token", "glrt-nobody-knows")
    assert status == 1
    assert out == ("ERROR: registering runner failed: verifying the runner: GitLab answered 403: "
                   "403 Forbidden\n")
    assert not config.exists()
    runner = gitlab.add_runner()
    config.write_text(f'[[runners]]\nname = "gone"\nurl = "{gitlab.base_url}"\ntoken = "{runner.token}"\n')
    del gitlab.runners[runner.token]
    status, out = await kuberunner("verify", "-c", str(config))
    assert (status, out) == (1, "ERROR: Verifying runner gone: is removed\n")
    status, out = await kuberunner("verify", "-c", str(config), "--delete")
    assert status == 0 and "Removed 1 invalid runner(s)" in out
    assert not tomllib.loads(config.read_text()).get("runners")
