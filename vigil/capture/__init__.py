"""Capture: a durable copy of what the model saw (DESIGN §13; SageMaker's data capture).

`settings` is the ``capture`` block of the logger's settings, `record` the one record
format (a dict per event, the same fields in JSONL and Parquet), `writer` the logger's
bounded queue and writer thread that rotate files through fsspec, `reader` iterates the
records of a capture directory (for `vigil report` and `vigil replay`), `replay`
re-sends them as CloudEvents. Importing this package imports none of them.
"""
