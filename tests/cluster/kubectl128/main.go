// kubectl 1.28, which no Python package ships: the fidelity tests build it from the Go module proxy
// (tests/cluster/old_kubectl.py) to check the embedded cluster against a SPDY-only, OpenAPI-v2 client.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
