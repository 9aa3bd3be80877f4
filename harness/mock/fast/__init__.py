"""The fast mock engine (`server.engine: fast`): an asyncio.Protocol on uvloop with httptools,
responses precomputed per endpoint (protocol), its counts (counts), one or N processes on one
port (supervisor)."""
