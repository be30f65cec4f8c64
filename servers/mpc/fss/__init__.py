"""Function secret sharing: distributed comparison and point functions (BGI16, BCG+21).

The dealer generates key pairs; each server evaluates its key on public (masked) inputs
and gets additive shares of the function's output in Z_2^128. Payloads carry the value and
its MAC share together, so an evaluation is authenticated like any other share.
"""
