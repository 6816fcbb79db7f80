"""Example das2 readers with their DSDF files (run as programs, not imported)."""
