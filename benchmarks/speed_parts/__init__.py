"""The measurements of `benchmarks/speed.py`, one module per part.

`speed.py` is the runner: it parses the command line, builds the batch,
and calls each part's function; the parts' results go into one JSON file.
"""
