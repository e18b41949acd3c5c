"""Writes the runner's config.toml: the chart's template plus the runner token read from its Secret.

The token never sits in the ConfigMap; the file that holds it is created readable and writable by the
runner's user only (0600), in a volume no other pod sees. Runs in the runner's own image (its Python
and tomlkit), as the runner's user, before the runner starts.
"""

import os
import sys

import tomlkit

template, token_file, out = sys.argv[1:4]
with open(template, encoding="utf-8") as file:
    document = tomlkit.parse(file.read())
with open(token_file, encoding="utf-8") as file:
    token = file.read(4096).strip()
if not token:
    sys.exit(f"{token_file}: the runner token is empty")
document["runners"][0]["token"] = token
partial = out + ".partial"
descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(descriptor, "w", encoding="utf-8") as file:
    file.write(tomlkit.dumps(document))
os.chmod(partial, 0o600)  # whatever the umask or an earlier file said
os.replace(partial, out)
