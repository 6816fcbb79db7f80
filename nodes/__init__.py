"""Data nodes: `base.py` and one package per node kind."""
