"""aiohttp client for the event-loop backends: one ClientSession, connector bounded by the
concurrency limit, keep-alive connections."""

from __future__ import annotations

import aiohttp

from harness.http import DELAY_HEADER, request_path
from harness.schema import CONNECT, HTTP_STATUS, PROTOCOL, RESET, TIMEOUT, Outcome


class AiohttpClient:
    def __init__(self, base_url: str, endpoint: str, concurrency: int, connect_timeout_s: float,
                 total_timeout_s: float, ok_status: frozenset[int]) -> None:
        self._base = base_url.rstrip("/")
        self._endpoint = endpoint
        self._ok_status = ok_status
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
            timeout=aiohttp.ClientTimeout(total=total_timeout_s, connect=connect_timeout_s),
            auto_decompress=False,
        )

    async def request(self, seq: int) -> tuple[Outcome, str]:
        """Returns the outcome and the slot label: the local port of the connection used."""
        slot = "conn-?"
        try:
            async with self._session.get(self._base + request_path(self._endpoint, seq)) as resp:
                if resp.connection is not None and resp.connection.transport is not None:
                    sockname = resp.connection.transport.get_extra_info("sockname")
                    if sockname:
                        slot = f"conn-{sockname[1]}"
                await resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return Outcome(False, 0, TIMEOUT, None), slot
        except aiohttp.ClientConnectorError:
            return Outcome(False, 0, CONNECT, None), slot
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError):
            return Outcome(False, 0, RESET, None), slot
        except aiohttp.ClientError:
            return Outcome(False, 0, PROTOCOL, None), slot
        delay = resp.headers.get(DELAY_HEADER)
        ok = resp.status in self._ok_status
        return Outcome(ok, resp.status, None if ok else HTTP_STATUS,
                       int(delay) if delay else None), slot

    async def close(self) -> None:
        await self._session.close()
