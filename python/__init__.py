"""csad training package: ``python -m python.train`` (run from the repository root; not installed).

Uses ``csad_kernels`` through its public API only.
"""
