"""Canadian SuperDARN radars over ZeroMQ (`canada` node): the aggregated
`CANADA_ADDR` feed and Borealis sites' own PUB sockets. Envelope decoding is
pure (envelopes); the SUB sockets are watched by the Twisted reactor (feed);
products and history are the radar pipeline superdarn uses too (nodes.radar), unchanged."""
