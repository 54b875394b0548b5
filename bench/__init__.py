"""Benchmarks: `python -m bench NAME` runs one (see bench.__main__.BENCHMARKS); figures are printed."""
