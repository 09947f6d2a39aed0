"""Benchmarks of csad_kernels (DESIGN.md §9): pytest-benchmark suites, the report command, the training-step timer.

``python -m benchmarks.report`` measures this machine and regenerates ``benchmarks/README.md``;
``python -m pytest benchmarks/test_rwr.py --benchmark-group-by=group`` runs one suite interactively.
See ``benchmarks/README.md``.
"""
