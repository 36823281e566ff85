"""A moq-rs server publishing a broadcast: once a peer subscribes, several groups.

usage: server_publish.py BROADCAST TRACK GROUPS FRAMES SECONDS [INTERVAL_MS]

With INTERVAL_MS the groups are written that far apart (moq-net may skip to the newest
group when several are written at once and the subscriber is slow to take them).
"""

import asyncio
import sys

import moq
from common import publish_groups, publish_groups_paced, run, say


async def main():
    broadcast, track_name = sys.argv[1], sys.argv[2]
    groups, frames = int(sys.argv[3]), int(sys.argv[4])
    origin = moq.OriginProducer()
    async with moq.Server("127.0.0.1:0", tls_generate=["localhost"], publish=origin, subscribe=origin) as server:
        producer = origin.create_broadcast(broadcast)
        track = producer.publish_track(track_name)
        producer.announce()
        serving = asyncio.create_task(server.serve())
        say("LISTENING", server.local_addr)
        await track.used()
        if len(sys.argv) > 6:
            await publish_groups_paced(track, groups, frames, int(sys.argv[6]) / 1000)
        else:
            publish_groups(track, groups, frames)
        say("PUBLISHED")
        await serving


run(main, float(sys.argv[5]))
