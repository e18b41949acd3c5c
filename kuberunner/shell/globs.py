"""GitLab's artifact and cache paths as POSIX extended regular expressions, for awk in the pod.

The files are only on the pod's volume, and the `kubelet` transport has no pods/exec to list them,
so matching happens where they are: `find` lists the project, awk keeps what matches. Writing the
regular expression here keeps GitLab's semantics (doublestar `**`, `*` within one directory, a
matched directory taking everything under it) in one tested place, whatever awk the image has.
"""

from __future__ import annotations

import posixpath


def project_relative(path: str, project_dir: str) -> str | None:
    """`path` relative to the project directory, or None when it leaves it (`../x`, `/etc`)."""
    if path.startswith("/"):
        joined = posixpath.normpath(path)
    else:
        joined = posixpath.normpath(posixpath.join(project_dir, path))
    root = posixpath.normpath(project_dir)
    if joined == root:
        return "."
    if not joined.startswith(root + "/"):
        return None
    relative = joined[len(root) + 1 :]
    # normpath folds `a/**/..`: keep the pattern as written when it had no `..`.
    written = path.removeprefix("./").rstrip("/")
    return written if ".." not in path.split("/") and not path.startswith("/") and written else relative


def glob_regex(pattern: str) -> str:
    """An ERE matching a project-relative file name when `pattern` matches it or one of its parent
    directories. `**` spans directories (and `**/` may match nothing), `*` and `?` stay within one,
    `[...]` is a class; everything else is literal."""
    if pattern == ".":
        return "^.*$"
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "") + "]")
            i = end + 1
            continue
        else:
            out.append(_literal(c))
        i += 1
    return "^" + "".join(out) + "(/.*)?$"


def _literal(c: str) -> str:
    if c.isalnum() or c in "/_-":
        return c
    if c in "\\^":
        return "\\" + c
    return f"[{c}]"
