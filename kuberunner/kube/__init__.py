"""Cluster access for the runner: settings (`config`), REST and pod watch (`client`), our own
attach/exec/log streaming (`streams`), and the pure parsers those drive (`channels`, `loglines`).

Nothing above this package sees aiohttp or kubernetes_asyncio: errors are `kube.errors` types.
"""
