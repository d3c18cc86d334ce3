"""Benchmarks of the project's hot paths against plain PyTorch references.

Usage: ``python -m benchmarks.bench_pgd``
"""
