"""The live batcher re-reads its subscribers from the router: a missed meta
event (a router link's subscription fires none for the next subscriber) costs
a few seconds of silence, never a silent topic for the node's lifetime."""

from __future__ import annotations

import collections

import numpy as np
from twisted.internet import defer, task

from nodes.node.live import RESYNC_SECONDS, LiveBatcher
from obsmesh.uris import Uris


class Router:
    """The router as the batcher sees it: meta subscriptions, lookups, publishes."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, int] = {}  # topic -> subscription id
        self.handlers: dict[str, object] = {}
        self.published: list[str] = []

    def subscribe(self, handler, topic):
        self.handlers[topic] = handler
        return defer.succeed(None)

    def call(self, procedure, topic):
        assert procedure == "wamp.subscription.lookup"
        return defer.succeed(self.subscriptions.get(topic))

    def publish(self, topic, payload, options=None):
        self.published.append(topic)


def batcher(clock: task.Clock, router: Router) -> tuple[LiveBatcher, collections.Counter]:
    counters: collections.Counter[str] = collections.Counter()
    fields = {"x": {"type": "number", "timeline": "tl"}}
    live = LiveBatcher("n1", Uris("obsmesh"), fields, counters, lambda: router, 10**6, clock)
    return live, counters


def test_a_subscriber_whose_on_create_never_came_is_found_within_the_resync_period():
    clock, router = task.Clock(), Router()
    live, counters = batcher(clock, router)
    defer.ensureDeferred(live.follow(router))  # no subscriber yet
    topic = "obsmesh.consumer.n1.live.array"
    router.subscriptions[topic] = 17  # subscribed, and no on_create reached the node
    live.add("tl", np.array([1.0]), {"x": np.array([2.0])})
    live.flush()
    assert router.published == [] and counters["live_batches_unsubscribed"] == 1
    clock.advance(RESYNC_SECONDS)
    assert live.wanted == {topic} and counters["live_subscriptions_resynced"] == 1
    live.add("tl", np.array([2.0]), {"x": np.array([3.0])})
    live.flush()
    assert router.published == [topic]
    # and a subscription gone without its on_delete stops costing encodes
    del router.subscriptions[topic]
    clock.advance(RESYNC_SECONDS)
    assert live.wanted == set()
    live.stop()
    assert not clock.getDelayedCalls()


def test_the_meta_events_still_count_at_once():
    clock, router = task.Clock(), Router()
    live, counters = batcher(clock, router)
    defer.ensureDeferred(live.follow(router))
    topic = "obsmesh.consumer.n1.live"
    router.subscriptions[topic] = 5
    router.handlers["wamp.subscription.on_create"](1, {"id": 5, "uri": topic, "match": "exact"})
    assert live.wanted == {topic}
    clock.advance(RESYNC_SECONDS)
    assert counters["live_subscriptions_resynced"] == 0  # nothing to put right
    live.stop()
