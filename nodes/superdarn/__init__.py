"""SuperDARN radar node: Connex framing, radar client, simulator and archive
replay around `nodes.radar` (DMAP, products, pipeline, echo store, synthesiser,
shared with the `canada` node). Framing is pure; client and simulator are thin
Twisted layers around it."""
