"""The run folder: its layout, the writer (cell by cell, crash-safe), the reader (every schema
version), the spool a cell writes while it runs, and the run's metadata.

Rule: imports harness.core only."""
