"""Backtests: replay topic ranges or file exports through the live worker's code."""
