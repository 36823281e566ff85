"""A moq-rs client that discovers a broadcast on the server and subscribes to it.

usage: client_subscribe.py URL BROADCAST TRACK FRAMES SECONDS
"""

import sys

import moq
from common import read_frames, run, say


async def main():
    url, broadcast, track_name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    async with moq.Client(url, tls_verify=False, reconnect=False) as client:
        say("CONNECTED")
        consumer = await client.announced_broadcast(broadcast)
        say("ANNOUNCED", broadcast)
        track = await consumer.subscribe_track(track_name)
        await read_frames(track, count)
        say("DONE")


run(main, float(sys.argv[5]))
