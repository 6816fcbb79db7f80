"""das2 node: streams, reducer, DSDF datasets, guarded readers (see PROTOCOLS.md section 5)."""
