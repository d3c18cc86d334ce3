"""Data sets: raw formats (formats), where raw data comes from (sources), the prepare stage
(prepare) and reading prepared splits (loader).

Usage: ``from batchout.data.loader import load_split``; ``from batchout.data.prepare import run``

Nothing is imported here, so the prepare stage does not pay for torch and training does not pay for PIL.
"""
