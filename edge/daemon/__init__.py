"""``splitface-edged``: the terminal daemon (camera or card tap -> face -> MPC query -> event)."""
