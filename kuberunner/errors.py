"""The errors a user causes, so that every entry point can report them as one line and exit 2.

Only input problems live here; failures of the cluster, the network or the runner itself are
results of a job, not exceptions a user should fix. The tree::

    Exception
     └── BadInput                 the user gave bad input (CLI exit status 2)
          └── FileError           ... found in a file, at a line or a key
               ├── JobFileError       .gitlab-ci.yml
               └── ConfigFileError    config.toml

Library errors (ruamel.yaml, tomllib) are translated into these at the parser boundary with
``raise ... from exc``; their text never reaches the user as a traceback.
"""

from __future__ import annotations

from pathlib import Path


class BadInput(Exception):
    """The user gave bad input: a usage mistake, a broken job file, a broken config file."""


class FileError(BadInput):
    """Bad input found in a file; ``str()`` is one line: ``FILE:LINE: message`` or ``FILE: message``.

    ``line`` is 1-based; 0 means the problem has no line (a missing file, an empty file).
    """

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(path, line, message)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line > 0 else f"{self.path}"
        # One line, always: a message quoting user text must not break the shape.
        return f"{where}: {' '.join(self.message.splitlines())}"


class JobFileError(FileError):
    """A problem in a .gitlab-ci.yml, e.g. ``.gitlab-ci.yml:4: job 'build': 'script' must be ...``."""


class ConfigFileError(FileError):
    """A problem in GitLab Runner's config.toml.

    With ``key`` the line is ``config.toml: key 'runners[0].kubernetes.host': expected a string``
    (tomllib keeps no line numbers for values); without it, ``config.toml:3: ...`` as for job files.
    """

    def __init__(self, path: Path, line: int, message: str, *, key: str | None = None) -> None:
        super().__init__(path, line, f"key {key!r}: {message}" if key is not None else message)
        self.key = key
