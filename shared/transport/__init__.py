"""Message transport: a small Channel protocol with in-process and CurveZMQ implementations."""

from splitface.shared.transport.base import Channel, ChannelStats, TransportError, TransportTimeout

__all__ = ["Channel", "ChannelStats", "TransportError", "TransportTimeout"]
