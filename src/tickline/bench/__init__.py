"""Benchmark harnesses behind ``tickline bench``: workloads, baselines and reports.

Results are printed and written as JSON; nothing here asserts a number.
"""
