"""``python -m app batch``: annotate a collection of videos on this machine or a Ray cluster.

One job per module:

- ``inputs``: which inputs a command line names (files, folders searched recursively, list files)
- ``probe``: an input's size, content hash and frame count, and opening it for reading
- ``plan``: cutting an input into overlapping chunks of frames
- ``worker``: the long-lived worker (a Ray actor) that loads the pipeline once and runs chunks
- ``stitch``: putting chunks back in order, keeping face ids across chunk boundaries
- ``schema``: the Parquet columns (the one place where per-face columns are added)
- ``rows``: a chunk's rows encoded in the worker (CSV + Arrow), renamed to final face ids by the driver
- ``parts``: the per-chunk files on disk (the durable state) and the final CSV + Parquet
- ``manifest``: ``DIR/manifest.json``: inputs, settings, versions, status; what resume reads
- ``progress``: the one progress bar over all frames
- ``cost``: CPU time per frame of each stage (``python -m app.batch.cost``), for docs/SCALING.md
- ``runner``: starts Ray, hands out chunks, collects, writes, handles faults and Ctrl+C
- ``cli``: the command's options

Only ``runner`` imports ray, and only the command imports it (and pyarrow), so the rest of
the app runs without the ``batch`` extra.
"""
