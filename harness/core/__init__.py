"""The ground floor: units, errors, cell keys and the backend catalogue, the clock, statistics,
record schemas, the wire constants that client and server share, CPU kernels, the image step,
the cell job's data model, process limits and pool offload.

Rule: imports nothing else from harness (the standard library, NumPy and pyarrow only)."""
