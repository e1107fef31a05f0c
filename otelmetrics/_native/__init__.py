"""Compiled core modules (built from cext/*.pyx)."""
