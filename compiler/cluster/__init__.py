"""The built plan as a cluster of processes on this machine: emulation and the benchmark."""
