"""Thin stage entry points: each module parses options, loads params, calls one library function.

Usage: ``python -m pipeline.prepare mnist`` (one hop from each ``cmd:`` in dvc.yaml)
"""
