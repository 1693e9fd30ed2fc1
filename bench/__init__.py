"""Kassa benchmarks: `python -m bench` (full) or `python -m bench --quick` (CI smoke run).

Each benchmark prints its figure and a ratio against a baseline measured in the same run;
the full run writes bench/RESULTS.md with the machine described. See bench/__main__.py.
"""
