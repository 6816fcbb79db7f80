"""An example obsmesh node kind living outside obsmesh: a tide gauge.

`kind.py` is the declaration obsmesh finds through the entry point in this
package's pyproject.toml; `node.py` is the node. See README.md.
"""
