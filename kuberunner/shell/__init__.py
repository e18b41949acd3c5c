"""Everything that becomes shell text inside the pod.

Stage scripts, the PID-1 shell, start and kill lines, and finding exit markers.

Pure: no I/O, no cluster access. The executor decides when; this package decides what bytes.
"""
