"""The dealer service: hands the two servers their authenticated correlated randomness."""
