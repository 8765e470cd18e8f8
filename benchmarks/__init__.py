"""Benchmarks: speed and quality of ``detector`` next to the peers a user would pick instead (issue 8).

Each ``bench_*.py`` prints a table and writes ``benchmarks/results/<name>.json``; ``python -m benchmarks.run_all``
(``make bench``) runs them all and ``benchmarks.report`` turns the JSON into the site's Benchmarks page.
"""
