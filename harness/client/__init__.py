"""The HTTP clients a workload sends with: standard (aiohttp on the loops, http.client in threads
and processes) and lean (httptools, both forms), with one set of error categories.

Rule: imports harness.core only."""
