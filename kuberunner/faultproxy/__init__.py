"""A TCP fault proxy for the connection between a runner and the Kubernetes API server.

The seed proved the attach strategy by killing that connection with `tcpkill` while a job ran;
this package makes that a repeatable test, for our suite and for users' own set-ups. Parts:

- `proxy`      `FaultProxy`: relay plus faults (reset, black hole, refusal) and counters;
- `relay`      one relayed connection and the real RST;
- `kubeconfig` `rewrite_kubeconfig`: a kubeconfig copy that points at the proxy;
- `address`    `HOST:PORT` parsing;
- `run`        `run_proxy`, the long-running form behind `kuberunner proxy`.

It knows nothing of Kubernetes beyond the kubeconfig's shape, and nothing of the runner.
"""

from kuberunner.faultproxy.address import parse_address
from kuberunner.faultproxy.kubeconfig import rewrite_kubeconfig
from kuberunner.faultproxy.proxy import AfterBlackHole, FaultProxy, ProxyStats
from kuberunner.faultproxy.run import run_proxy

__all__ = ["AfterBlackHole", "FaultProxy", "ProxyStats", "parse_address", "rewrite_kubeconfig", "run_proxy"]
