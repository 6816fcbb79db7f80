"""SuperDARN radar node: DMAP records, Connex framing, radar client, products,
simulator and archive replay. Protocol code is pure (dmap, framing, products,
synth, radars); client and simulator are thin Twisted layers around it."""
