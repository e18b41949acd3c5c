"""The embedded single-node Kubernetes cluster: an API server on loopback whose pods are local processes.

It meets the runner only over HTTP and WebSocket, exactly like a real cluster would.
"""
