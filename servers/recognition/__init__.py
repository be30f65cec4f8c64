"""Face recognition under MPC: identification, verification and training on shares."""
