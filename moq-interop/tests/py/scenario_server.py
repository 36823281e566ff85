"""The server role of the interop scenario, as far as moq-net goes on moq-lite-04:
publish `interop/server` (group 1: HELLO), discover `interop/client` and read its HELLO.
It cannot serve FETCH on lite-04, does not answer PROBE and has no GOAWAY call.

usage: scenario_server.py SECONDS
"""

import asyncio
import sys

import moq
from common import read_frames, run, say


async def main():
    origin = moq.OriginProducer()
    async with moq.Server("127.0.0.1:0", tls_generate=["localhost"], publish=origin, subscribe=origin) as server:
        producer = origin.create_broadcast("interop/server")
        track = producer.publish_track("")
        producer.announce()
        group = track.create_group(1)
        group.write_frame(b"HELLO")
        group.finish()
        serving = asyncio.create_task(server.serve())
        say("LISTENING", server.local_addr)
        consumer = await origin.consume().announced_broadcast("interop/client")
        reverse = await consumer.subscribe_track("")
        await read_frames(reverse, 1)
        say("DONE")
        await serving


run(main, float(sys.argv[1]))
