"""What the radar nodes share (`superdarn` and `canada`): DMAP records, radar
tables, products, the pipeline that turns records into beams, scans and echo
counts, the SQLite echo store and the record synthesiser. All of it is pure
except the pipeline (Twisted, through the node it is given)."""
