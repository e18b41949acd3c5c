"""The helper's transfer stages: artifacts and cache moved between the pod and GitLab or S3.

As in GitLab Runner, the helper container talks HTTP itself (curl), so the bytes never pass
through the runner (a 1 GiB artifact costs the runner nothing) and the same stages work with the
`file` and the `kubelet` transport alike, pods/exec or not. What the helper needs: a POSIX shell,
find, awk, curl, zip and unzip (archives), gzip (reports), git (untracked files).

Credentials (JOB-TOKEN headers) reach curl through `-K` config files in a Secret volume mounted in
the helper alone: never in argv, never in a file the build container can read. Presigned S3 URLs
are credentials too and live in the same place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kuberunner.shell.globs import glob_regex
from kuberunner.shell.quoting import quote

When = Literal["on_success", "on_failure", "always"]

PRIVATE_DIR = "/kuberunner/transfer"
"""Where the helper alone mounts the transfer credentials."""

_PRELUDE = (
    "# Rendered by kuberunner: a transfer stage of the helper container.\n"
    'kr_tmp="$(umask 077 && mktemp -d)" || exit 1\n'
    "trap 'rm -rf \"$kr_tmp\"' EXIT\n"
    # Every read bounded: 30 s to connect, and a transfer slower than 1 byte/s for 60 s is dropped.
    'kr_curl() { curl -sS --connect-timeout 30 --speed-limit 1 --speed-time 60 "$@"; }\n'
)


def _needs(tools: str, *, fatal: bool) -> str:
    """Say at once which tool the helper image lacks, instead of retrying a command that cannot run."""
    level, code = ("ERROR", 1) if fatal else ("WARNING", 0)
    return (
        f"for kr_tool in {tools}; do\n"
        '  command -v "$kr_tool" >/dev/null 2>&1 && continue\n'
        f"  printf '{level}: %s is not installed in the helper image\\n' \"$kr_tool\"; exit {code}\n"
        "done\n"
    )


@dataclass(frozen=True, slots=True)
class Upload:
    """One archive or report to upload after the script."""

    name: str
    paths: tuple[str, ...]
    """Project-relative glob patterns, already expanded and checked to stay in the project."""
    exclude: tuple[str, ...] = ()
    untracked: bool = False
    when: When = "on_success"
    artifact_type: str = "archive"
    artifact_format: str = "zip"
    expire_in: str = ""


@dataclass(frozen=True, slots=True)
class Download:
    """A dependency's artifacts: downloaded with its own token and unpacked into the project."""

    job_id: int
    name: str
    token: str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str
    paths: tuple[str, ...]
    untracked: bool = False
    pull: bool = True
    push: bool = True
    when: When = "on_success"
    get_urls: tuple[str, ...] = ()
    """Presigned GET URLs of the key, then of the fallback keys, tried in order."""
    put_url: str = ""


@dataclass(frozen=True, slots=True)
class Transfers:
    """What a job moves around its script; the executor knows no more of GitLab than this."""

    api_url: str
    """GitLab's base URL as the helper reaches it, without a trailing slash."""
    job_id: int
    job_token: str = field(repr=False)
    uploads: tuple[Upload, ...] = ()
    downloads: tuple[Download, ...] = ()
    caches: tuple[CacheEntry, ...] = ()
    ca_file: str = ""
    """The CA bundle (a path in the pod) curl trusts for GitLab."""

    def uploads_for(self, succeeded: bool) -> tuple[Upload, ...]:
        wanted = ("on_success", "always") if succeeded else ("on_failure", "always")
        return tuple(u for u in self.uploads if u.when in wanted)

    def caches_to_save(self, succeeded: bool) -> tuple[CacheEntry, ...]:
        wanted = ("on_success", "always") if succeeded else ("on_failure", "always")
        return tuple(c for c in self.caches if c.push and c.put_url and c.when in wanted)


def curl_config(token: str, ca_file: str) -> bytes:
    """A `curl -K` file sending the job token; the token never shows in argv."""
    if any(c in token + ca_file for c in '"\\\n\r'):
        raise ValueError("the job token or CA path cannot be written to a curl config file")
    lines = [f'header = "JOB-TOKEN: {token}"\n']
    if ca_file:
        lines.append(f'cacert = "{ca_file}"\n')
    return "".join(lines).encode()


def url_config(url: str, ca_file: str = "") -> bytes:
    """A `curl -K` file naming a presigned URL: it carries a signature, so it is kept off argv too."""
    if any(c in url + ca_file for c in '"\\\n\r'):
        raise ValueError("the URL cannot be written to a curl config file")
    return (f'url = "{url}"\n' + (f'cacert = "{ca_file}"\n' if ca_file else "")).encode()


_SELECT = r"""awk '
BEGIN { ni = ENVIRON["KR_NI"] + 0; ne = ENVIRON["KR_NE"] + 0 }
{
  for (j = 1; j <= ne; j++) if ($0 ~ ENVIRON["KR_E" j]) next
  if (ENVIRON["KR_ALL"] == "1") { print; next }
  hit = 0
  for (i = 1; i <= ni; i++) if ($0 ~ ENVIRON["KR_I" i]) { n[i]++; hit = 1 }
  if (hit) print
}
END {
  for (i = 1; i <= ni; i++) {
    if (n[i] + 0 > 0) msg = ": found " n[i] " matching artifact files and directories"
    else msg = ": no matching files. Ensure that the artifact path is relative to the working directory (" \
      ENVIRON["KR_DIR"] ")"
    printf "%s%s%s\n", (n[i] + 0 > 0 ? "" : "WARNING: "), ENVIRON["KR_S" i], msg > "/dev/stderr"
  }
}'"""


def _select(
    paths: Sequence[str], exclude: Sequence[str], untracked: bool, project_dir: str, into: str
) -> str:
    """Shell text writing the project-relative names of the matching files to `into`, one a line."""
    env = [f"KR_NI={len(paths)}", f"KR_NE={len(exclude)}", f"KR_DIR={quote(project_dir)}"]
    for i, pattern in enumerate(paths, 1):
        env += [f"KR_I{i}={quote(glob_regex(pattern))}", f"KR_S{i}={quote(pattern)}"]
    exclude_env = ""
    for j, pattern in enumerate(exclude, 1):
        env.append(f"KR_E{j}={quote(glob_regex(pattern))}")
        exclude_env += f" KR_E{j}={quote(glob_regex(pattern))}"
    listing = "find . -mindepth 1 \\( -type f -o -type l \\) -print | sed 's|^\\./||'"
    text = f"{listing} | env {' '.join(env)} {_SELECT} >{into}\n"
    if untracked:
        # Every file git does not track, .gitignore'd ones included (GitLab's `untracked`); `exclude`
        # applies to them too.
        text += (
            f"git ls-files -o 2>/dev/null | env KR_ALL=1 KR_NI=0 KR_NE={len(exclude)}{exclude_env} {_SELECT}"
            f" >>{into}"
            f"\nsort -u -o {into} {into}\n"
        )
    return text


def _retrying_request() -> str:
    """`kr_send WHAT ARGS...`: one curl call, again on 5xx, 429 or no answer; sets $kr_code."""
    return (
        "kr_send() {\n"
        '  kr_what="$1"; shift\n'
        "  kr_try=1\n"
        "  while :; do\n"
        '    kr_code="$(kr_curl -o "$kr_tmp/reply" -w \'%{http_code}\' "$@")" || kr_code="${kr_code:-000}"\n'
        '    case "$kr_code" in\n'
        "      5??|429|000) ;;\n"
        "      *) return 0 ;;\n"
        "    esac\n"
        '    [ "$kr_try" -ge 4 ] && return 0\n'
        '    printf \'WARNING: %s... %s; retrying\\n\' "$kr_what" "$kr_code"\n'
        '    sleep "$kr_try"\n'
        "    kr_try=$((kr_try + 1))\n"
        "  done\n"
        "}\n"
    )


def render_uploads(transfers: Transfers, uploads: Sequence[Upload], *, project_dir: str) -> str:
    """Archive each upload's files and POST them to GitLab; exit 1 when one was refused."""
    url = quote(f"{transfers.api_url}/api/v4/jobs/{transfers.job_id}/artifacts")
    tools = "curl find awk sed " + ("zip" if any(u.artifact_format == "zip" for u in uploads) else "gzip")
    lines = [_PRELUDE, _needs(tools, fatal=True), _retrying_request(), f"cd {quote(project_dir)} || exit 1\n"]
    lines.append("kr_failed=0\n")
    for index, upload in enumerate(uploads):
        listed = f'"$kr_tmp/list{index}"'
        ext = ".zip" if upload.artifact_format == "zip" else ".gz"
        archive = f'"$kr_tmp/upload{index}{ext}"'
        filename = quote((upload.name or f"{upload.artifact_type}") + ext).replace(";", "_")
        what = f'Uploading artifacts as "{upload.artifact_type}" to coordinator'
        lines.append("printf 'Uploading artifacts...\\n'\n")
        lines.append(_select(upload.paths, upload.exclude, upload.untracked, project_dir, listed))
        if upload.artifact_format == "zip":
            pack = f"zip -q -y -@ {archive} <{listed}"
        else:
            pack = f'while IFS= read -r f; do cat -- "$f"; done <{listed} | gzip -c >{archive}'
        fields = [
            f"-F {quote('file=@')}{archive}{quote(';filename=')}{filename}",
            f"-F {quote('artifact_type=' + upload.artifact_type)}",
            f"-F {quote('artifact_format=' + upload.artifact_format)}",
        ]
        if upload.expire_in:
            fields.append(f"-F {quote('expire_in=' + upload.expire_in)}")
        lines += [
            f"if [ ! -s {listed} ]; then\n",
            "  printf 'ERROR: No files to upload\\n'\n",
            f"elif ! {pack}; then\n",
            "  printf 'ERROR: could not make the artifacts archive\\n'; kr_failed=1\n",
            "else\n",
            f"  kr_send {quote(what)} -K {quote(f'{PRIVATE_DIR}/job-token')} {' '.join(fields)} {url}\n",
            '  case "$kr_code" in\n',
            f"    201) printf '%s... 201 Created\\n' {quote(what)} ;;\n",
            f"    413) printf 'ERROR: %s... too large archive\\n' {quote(what)}\n",
            "         printf 'FATAL: too large\\n'; kr_failed=1 ;;\n",
            f"    *) printf 'ERROR: %s... %s\\n' {quote(what)} \"$kr_code\"; kr_failed=1 ;;\n",
            "  esac\n",
            "fi\n",
        ]
    lines.append("exit $kr_failed\n")
    return "".join(lines)


def download_config_name(index: int) -> str:
    return f"dependency-{index}"


def render_downloads(transfers: Transfers, *, project_dir: str) -> str:
    """Download every dependency's archive with its token and unpack it into the project."""
    lines = [
        _PRELUDE,
        _needs("curl unzip", fatal=True),
        _retrying_request(),
        f"mkdir -p {quote(project_dir)} && cd {quote(project_dir)} || exit 1\n",
    ]
    for index, download in enumerate(transfers.downloads):
        url = quote(f"{transfers.api_url}/api/v4/jobs/{download.job_id}/artifacts")
        config = quote(f"{PRIVATE_DIR}/{download_config_name(index)}")
        shown = quote(f"{download.name} ({download.job_id})")
        lines += [
            f"printf 'Downloading artifacts for %s...\\n' {shown}\n",
            f'kr_send "Downloading artifacts from coordinator" -K {config} {url}\n',
            'case "$kr_code" in\n',
            '  200) mv "$kr_tmp/reply" "$kr_tmp/artifacts.zip"\n',
            '       if ! unzip -o -q "$kr_tmp/artifacts.zip"; then\n',
            "         printf 'ERROR: could not unpack the artifacts of %s\\n' " + shown + "; exit 1\n",
            "       fi\n",
            f"       printf 'Downloading artifacts from coordinator... ok  id=%s\\n' {download.job_id} ;;\n",
            "  404) printf 'ERROR: Downloading artifacts from coordinator... not found  id=%s\\n' "
            f"{download.job_id}; exit 1 ;;\n",
            "  403) printf 'ERROR: Downloading artifacts from coordinator... forbidden  id=%s\\n' "
            f"{download.job_id}; exit 1 ;;\n",
            "  *) printf 'ERROR: Downloading artifacts from coordinator... %s  id=%s\\n' "
            f'"$kr_code" {download.job_id}; exit 1 ;;\n',
            "esac\n",
        ]
    return "".join(lines)


def cache_config_name(index: int, verb: str, attempt: int = 0) -> str:
    return f"cache-{index}-{verb}-{attempt}"


def render_cache_restore(caches: Sequence[CacheEntry], *, project_dir: str) -> str:
    """Restore each pulled cache (its key, then the fallback keys); a missing one is a warning."""
    lines = [
        _PRELUDE,
        _needs("curl unzip", fatal=False),
        _retrying_request(),
        f"mkdir -p {quote(project_dir)} && cd {quote(project_dir)} || exit 1\n",
    ]
    for index, cache in enumerate(caches):
        if not cache.pull:
            continue
        lines.append(f"printf 'Checking cache for %s...\\n' {quote(cache.key)}\n")
        lines.append("kr_found=\n")
        for attempt, _ in enumerate(cache.get_urls):
            config = quote(f"{PRIVATE_DIR}/{cache_config_name(index, 'get', attempt)}")
            lines += [
                'if [ -z "$kr_found" ]; then\n',
                f'  kr_send "Downloading cache" -K {config}\n',
                '  if [ "$kr_code" = 200 ] && mv "$kr_tmp/reply" "$kr_tmp/cache.zip" '
                '&& unzip -o -q "$kr_tmp/cache.zip"; then kr_found=1; fi\n',
                "fi\n",
            ]
        lines += [
            'if [ -n "$kr_found" ]; then\n',
            "  printf 'Successfully extracted cache\\n'\n",
            "else\n",
            f"  printf 'WARNING: file does not exist for cache %s\\n' {quote(cache.key)}\n",
            "  printf 'Failed to extract cache\\n'\n",
            "fi\n",
        ]
    lines.append("exit 0\n")
    return "".join(lines)


def render_cache_save(caches: Sequence[tuple[int, CacheEntry]], *, project_dir: str) -> str:
    """Archive each pushed cache and PUT it to its presigned URL; a failure is a warning."""
    lines = [_PRELUDE, _needs("curl zip find awk sed", fatal=False), _retrying_request()]
    lines.append(f"cd {quote(project_dir)} || exit 0\n")
    for index, cache in caches:
        listed = f'"$kr_tmp/cache{index}"'
        archive = f'"$kr_tmp/cache{index}.zip"'
        config = quote(f"{PRIVATE_DIR}/{cache_config_name(index, 'put')}")
        lines += [
            f"printf 'Creating cache %s...\\n' {quote(cache.key)}\n",
            _select(cache.paths, (), cache.untracked, project_dir, listed),
            f"if [ ! -s {listed} ]; then\n",
            "  printf 'WARNING: no files to cache\\n'\n",
            f"elif zip -q -y -@ {archive} <{listed}; then\n",
            f'  kr_send "Uploading cache" -K {config} -T {archive}\n',
            '  case "$kr_code" in\n',
            "    2??) printf 'Created cache\\n' ;;\n",
            "    *) printf 'WARNING: failed to upload the cache: %s\\n' \"$kr_code\" ;;\n",
            "  esac\n",
            "fi\n",
        ]
    lines.append("exit 0\n")
    return "".join(lines)


def sanitized_key(key: str) -> str | None:
    """GitLab Runner's cache key rules: no `\\`, no path walking, at most 255 bytes; trailing slashes
    and surrounding spaces go. None when nothing usable is left."""
    key = key.strip().replace("\\", "/").rstrip("/")
    parts = key.split("/")
    if not key or any(p in (".", "..") for p in parts) or len(key.encode()) > 255:
        return None
    return key
