"""Scaling-law curves: how a downstream model's error falls as its training set grows."""
