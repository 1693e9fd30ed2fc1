"""A fast local webhook receiver for bench/live.py: asyncio, answers 204 to every POST,
counts requests and distinct webhook-ids (GET /stats), GET /health for readiness."""

from __future__ import annotations

import argparse
import asyncio
import json


class Receiver:
    def __init__(self) -> None:
        self.requests = 0
        self.ids: set[str] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                if method == "POST":
                    self.requests += 1
                    self.ids.add(headers.get("webhook-id", ""))
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                else:
                    body = b"ok"
                    if path == "/stats":
                        body = json.dumps(
                            {"requests": self.requests, "distinct_ids": len(self.ids)}
                        ).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def main(port: int) -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
