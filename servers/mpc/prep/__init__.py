"""Preprocessing: correlated randomness behind one interface (dealer now, OT-based later)."""
