"""Console entry points for the server side."""
