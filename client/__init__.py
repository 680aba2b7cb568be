"""Python client for the Shanghai Open Feeds WebSocket protocol v1: subscriptions that survive dropped
connections (resume from the last sequence number, or an explicit reset with a fresh snapshot), with
exponential backoff and a local copy of each subscription's entities."""

from .feed_client import Event, FeedClient, SubscriptionSpec
from .resume import GapError

__all__ = ["Event", "FeedClient", "GapError", "SubscriptionSpec"]
