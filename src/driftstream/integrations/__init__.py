"""Adapters that run driftstream's monitors inside other stream processors (Faust).

Each adapter imports its framework lazily: installing driftstream never
requires one, and importing this package imports none.
"""
