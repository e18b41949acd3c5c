"""The node half of the embedded cluster: a kubelet running containers as local processes.

`kubelet` drives each pod's lifecycle (volumes, init and app containers, restarts, status through
`podstatus`); `runtime` starts and reaps container processes, isolated by `sandbox`,
`sandbox_launch`, `rootfs` and `hidden`; `volumes` materialises volumes and environment; `crilog`
writes CRI-format logs that `logs` serves; `streaming` and `pipes` carry exec and attach over
WebSocket. It sees the API half only through `cluster.contracts`.
"""
