"""The API-server half of the embedded cluster: what a Kubernetes client talks to.

The aiohttp application (`apiserver`, `rest`, `access_review`) decodes requests (`requests`,
`protobuf`, `unknown`), checks and defaults objects (`admission`, `shapes`, `validation`, `pods`,
`podsecurity`), keeps them in one `store` with resourceVersions, watches (`watch`, `watch_stream`)
and managedFields (`managed`), and answers in the real server's shapes (`tables`, `discovery`,
`nodeobject`). It reaches the node only through `cluster.contracts`; `connections` guards the socket.
"""
