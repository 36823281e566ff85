"""The client role of the interop scenario, as far as moq-net goes on moq-lite-04:
read HELLO from `interop/server`, publish `interop/client` (group 1: HELLO), then wait
for the server's GOAWAY to end the session.

usage: scenario_client.py URL SECONDS
"""

import asyncio
import sys

import moq
from common import read_frames, run, say


async def main():
    async with moq.Client(sys.argv[1], tls_verify=False, reconnect=False) as client:
        say("CONNECTED")
        producer = client.create_broadcast("interop/client")
        track = producer.publish_track("")
        producer.announce()

        async def serve():
            await track.used()
            group = track.create_group(1)
            group.write_frame(b"HELLO")
            group.finish()
            say("SERVED")

        serving = asyncio.create_task(serve())
        consumer = await client.announced_broadcast("interop/server")
        await read_frames(await consumer.subscribe_track(""), 1)
        await serving
        try:
            await client.session.closed()
            say("CLOSED ok")
        except Exception as e:  # noqa: BLE001 - the close reason is the result
            say("CLOSED", repr(e))


run(main, float(sys.argv[2]))
