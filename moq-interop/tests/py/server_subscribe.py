"""A moq-rs server that subscribes to a broadcast its client publishes.

usage: server_subscribe.py BROADCAST TRACK FRAMES SECONDS
"""

import asyncio
import sys

import moq
from common import read_frames, run, say


async def main():
    broadcast, track_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    origin = moq.OriginProducer()
    async with moq.Server("127.0.0.1:0", tls_generate=["localhost"], publish=origin, subscribe=origin) as server:
        serving = asyncio.create_task(server.serve())
        say("LISTENING", server.local_addr)
        consumer = await origin.consume().announced_broadcast(broadcast)
        say("ANNOUNCED", broadcast)
        track = await consumer.subscribe_track(track_name)
        await read_frames(track, count)
        say("DONE")
        serving.cancel()


run(main, float(sys.argv[4]))
