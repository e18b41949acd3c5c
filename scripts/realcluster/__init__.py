"""The parts of scripts/real-cluster: layout, build, images, PKI, the node's processes, the commands."""
