"""The benchmark suite of smartconnect_async: ``python -m benchmarks`` (see README.md).

Every measurement runs side by side with its baselines in one run, round robin, because
the machine is shared and noisy: ratios between contenders are what the goals judge.
"""
