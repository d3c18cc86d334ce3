"""Data sets: raw formats (``formats``), where raw data comes from (``sources``: the data set registry,
raw_dir, the offline mirror, torchvision's download), copying raw files in (``transfer``), making the
seeded splits (``prepare``) and
the prepared folder with its meta.json (``loader``).

Usage: ``from batchout.data.loader import load_split``; the prepare stage is ``batchout.stages.prepare``

Nothing is imported here, so reading prepared data does not pay for PIL. Must not import models,
training, tracking or tuning.
"""
