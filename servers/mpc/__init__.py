"""The SPDZ-style two-party engine: authenticated shares over Z_2^128, dealer preprocessing."""
