"""The server daemons: edge gateway, coordination between P0 and P1, request handling."""
