"""Stage scripts as files for the Secret volume: POSIX sh that bash runs unchanged.

A stage script exports the job's variables, enters $CI_PROJECT_DIR, and runs the job's lines one
by one, echoing each first (as GitLab does) and stopping at the first failing one (`set -e`).
"""

from __future__ import annotations

from collections.abc import Sequence

from kuberunner.shell.quoting import is_variable_name, quote

_ECHO_COMMAND = "printf '\\033[32;1m$ %s\\033[0;m\\n' "

_PRELUDE = (
    "# Rendered by kuberunner. Runs with stdin from /dev/null; its exit code becomes the stage's marker.\n"
    "if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi\n"
    "set -e\n"
)


def _exports(variables: Sequence[tuple[str, str]]) -> str:
    lines = [f"export {key}={quote(value)}\n" for key, value in variables if is_variable_name(key)]
    return "".join(lines)


def _shown(command: str) -> str:
    """What the trace shows for a command: the line itself, or its first line for a multi-line one."""
    first, sep, _ = command.strip("\n").partition("\n")
    return first + (" # collapsed multi-line command" if sep else "")


def render_user_stage(
    *, commands: Sequence[str], variables: Sequence[tuple[str, str]], project_dir: str
) -> str:
    """step_script (before_script + script) or after_script."""
    body = [_PRELUDE, _exports(variables), f"cd {quote(project_dir)}\n"]
    for command in commands:
        body.append(_ECHO_COMMAND + quote(_shown(command)) + "\n")
        body.append(command.rstrip("\n") + "\n")
    return "".join(body)


def render_get_sources(*, archive: str | None, project_dir: str) -> str:
    """Unpack the project archive from the Secret into $CI_PROJECT_DIR (an empty dir when there is none)."""
    lines = [_PRELUDE, f"mkdir -p {quote(project_dir)}\n", f"cd {quote(project_dir)}\n"]
    if archive is not None:
        lines.append(f"tar -xzf {quote(archive)}\n")
    return "".join(lines)


def render_git_sources(
    *,
    repo_url: str,
    ref: str,
    ref_type: str,
    sha: str,
    depth: int,
    strategy: str,
    checkout: bool,
    project_dir: str,
    auth_header: str = "",
    ca_file: str = "",
) -> str:
    """Clone or fetch `repo_url` into $CI_PROJECT_DIR and check out `sha`, quietly (GitLab's GIT_* semantics).

    `strategy` is GIT_STRATEGY: `clone` starts from an empty directory, `fetch` reuses a repository
    left there, `none` only makes the directory. Submodules are not touched. Nothing is printed
    unless git fails, so the trace holds only the job's own output. `auth_header` (an HTTP header
    line) reaches git through a 0600 config file included for the fetch alone and removed right
    after it: never through argv (`ps`), the remote URL or .git/config. `ca_file` is the CA bundle
    git trusts for that server, in the same file.
    """
    lines = [_PRELUDE, f"mkdir -p {quote(project_dir)}\n", f"cd {quote(project_dir)}\n"]
    if strategy == "none":
        return "".join(lines)
    if ref_type == "tag":
        refspec = f"+refs/tags/{ref}:refs/tags/{ref}"
    else:
        refspec = f"+refs/heads/{ref}:refs/remotes/origin/{ref}"
    depth_option = f" --depth {int(depth)}" if depth > 0 else ""
    lines += [
        "export GIT_TERMINAL_PROMPT=0\n",
        "find . -mindepth 1 -maxdepth 1 -exec rm -rf {} +\n" if strategy == "clone" else "",
        "[ -d .git ] || git init -q .\n",
        "git remote remove origin 2>/dev/null || true\n",
        f"git remote add origin {quote(repo_url)}\n",
    ]
    fetch = f"git -c protocol.version=2 fetch -q --prune --no-tags{depth_option} origin {quote(refspec)}\n"
    if auth_header or ca_file:
        lines += _with_fetch_config(repo_url, auth_header, ca_file, fetch)
    else:
        lines.append(fetch)
    if checkout:
        lines.append(f"git -c advice.detachedHead=false checkout -q -f {quote(sha)}\n")
    return "".join(lines)


def _with_fetch_config(repo_url: str, header: str, ca_file: str, fetch: str) -> list[str]:
    # The settings go through a here-document (no argv) into mktemp's 0600 file, scoped to the
    # repository's server so a redirect elsewhere does not carry the header.
    scheme, _, rest = repo_url.partition("://")
    server = f"{scheme}://{rest.split('/', 1)[0]}/"
    settings = ([f"\textraHeader = {header}\n"] if header else []) + (
        [f"\tsslCAInfo = {ca_file}\n"] if ca_file else []
    )
    if any(c in server + header + ca_file for c in '"\\\n') or "KUBERUNNER_GIT" in header:
        raise ValueError("the git server, header or CA path cannot be written to a git config file")
    return [
        'kr_git="$(umask 077 && mktemp)"\n',
        "trap 'rm -f \"$kr_git\"' EXIT\n",
        "cat >\"$kr_git\" <<'KUBERUNNER_GIT'\n",
        f'[http "{server}"]\n',
        *settings,
        "KUBERUNNER_GIT\n",
        'git -c include.path="$kr_git" ' + fetch.removeprefix("git "),
        'rm -f "$kr_git"\n',
    ]


KILL_STAGE = """\
# Rendered by kuberunner: ends every process that carries the stage's token in its environment,
# including orphans and background jobs; TERM first, KILL after two seconds.
token="KUBERUNNER_STAGE_$1=1"
sig=TERM
round=0
while :; do
  found=
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = 1 ] && continue
    [ "$pid" = "$$" ] && continue
    if tr '\\000' '\\n' <"$d/environ" 2>/dev/null | grep -qx "$token"; then
      kill -s "$sig" "$pid" 2>/dev/null && found=1
    fi
  done
  [ -z "$found" ] && break
  round=$((round + 1))
  [ "$round" -ge 20 ] && sig=KILL
  [ "$round" -ge 100 ] && break
  sleep 0.1 2>/dev/null || sleep 1
done
"""
"""`sh kill_stage TOKEN`: a script file, because a /proc walk does not fit on one stdin line."""
