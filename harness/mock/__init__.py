"""The mock server: the process the runner starts (process), its entry point (serve), the aiohttp
engine, the fast engine (fast/), the `cpu` endpoint step, the timerfd deadlines.

Rule: imports harness.core and harness.scenario; never the client, cell, run, analysis or
report parts (the server under test knows nothing of who measures it)."""
