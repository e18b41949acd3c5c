"""`python -m kuberunner.cluster`: the embedded cluster without the `kuberunner` CLI (for debugging)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kuberunner.cluster.server import run_cluster_forever


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m kuberunner.cluster")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--kubeconfig-out", type=Path)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--forbid", action="append", default=[], metavar="VERB")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    return run_cluster_forever(
        listen=args.listen, kubeconfig_out=args.kubeconfig_out, state_dir=args.state_dir, forbid=args.forbid
    )


if __name__ == "__main__":
    raise SystemExit(main())
