"""Throughput benchmarks of parcel-monitor, run side by side with the reference tools.

Each benchmark prints figures and ratios; none is a test and none asserts a timing.
"""
