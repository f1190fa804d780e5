"""The consumer contract: what a channel needs from a subscriber, and all it may ask of one.

A channel never writes a subscriber's fields: it hands messages over through this interface, and
the subscriber (:class:`~nsqtx.client_v2.ClientV2`) keeps its own counts.
"""
from __future__ import annotations

from zope.interface import Attribute, Interface


class IConsumer(Interface):
    msg_timeout = Attribute("Seconds a message delivered to it stays in flight before it times out.")
    can_receive = Attribute("False while it can take nothing more (its transport is full, or it is "
                            "going away); delivery to it stops at once.")

    def room():
        """How many more messages it takes now: its RDY count less what is in flight to it, and 0
        while it cannot receive."""

    def buffer_room():
        """How many bytes of message frames fill its output buffer: a run of messages handed over at
        once ends there (after at least one), so that back-pressure can stop it in time."""

    def start_share():
        """The channel's pump is about to hand it a share of messages (several runs)."""

    def deliver(records, start, end, count):
        """`count` messages, whose frames lie back to back at records[start:end], are in flight to it
        from now on (the channel has recorded them)."""

    def end_share(last):
        """The share is handed over; `last`: it ended the pump's slice, so it goes out now."""

    def flush():
        """Send what waits in its output buffer now (its channel was paused)."""

    def timed_out(count):
        """`count` messages in flight to it timed out and were taken back."""

    def emptied():
        """Everything in flight to it was dropped (its channel was emptied)."""

    def close():
        """Its channel is going away (deleted, or the node is stopping): disconnect."""
