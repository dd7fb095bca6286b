"""Benchmarks (``make bench`` = ``python -m benchmarks.run --output_dir runs/bench``); throughput is reported as a
fraction of the machine's measured GEMM peak."""
