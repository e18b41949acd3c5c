"""The embedded single-node Kubernetes cluster: an API server on loopback whose pods are local processes.

It meets the runner only over HTTP and WebSocket, exactly like a real cluster would. `api/` is the API
server half, `node/` the kubelet half; they meet only through `contracts` (the node's view of the
store, the server's view of the kubelet) and share `status` (the Status errors both answer with).
`server` wires the two together behind TLS (`tls`) and writes the kubeconfig (`kubeconfig`).
"""
