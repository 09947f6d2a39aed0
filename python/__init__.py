"""csad: Cross-Sample Adversarial Debiasing.

Installed (``pip install .``) this folder is the package ``csad``: ``csad-train`` or ``python -m csad.train`` trains
on a benchmark or your own table. From the repository root the same files run as ``python -m python.train``.

Uses ``csad_kernels`` through its public API only.
"""
