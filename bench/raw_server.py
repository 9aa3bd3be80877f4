"""The floor for bench/engines.py: one canned 200 per request, found by its blank line alone.

    python -m bench.raw_server [PORT]   # 127.0.0.1; prints the port; SIGINT/SIGTERM stop it
"""

import asyncio
import signal
import sys

import uvloop

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 128\r\n\r\n" + b"x" * 128


class Canned(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.rest = transport, b""

    def data_received(self, data):
        data = self.rest + data
        end = data.rfind(b"\r\n\r\n")
        if end >= 0:
            self.transport.write(RESPONSE * data.count(b"\r\n\r\n", 0, end + 4))
        self.rest = data[end + 4:] if end >= 0 else data[-65536:]


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
