"""Performance scripts (not tests): ``python -m musicpop.benchmark.perf features|train``.

Each prints its figures; the README's performance section quotes them with the machine they came from.
"""
