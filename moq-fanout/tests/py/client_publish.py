"""A moq-rs (moq-net) client publishing to a relay: once the relay subscribes, several groups.

usage: client_publish.py URL BROADCAST TRACK GROUPS FRAMES SECONDS

Prints one fact per line: CONNECTED, SUBSCRIBED, PUBLISHED, or ERROR <reason>. Payloads are
`g<i>f<j>` (group index from 0, frame index). Lives at most SECONDS, then exits.
"""

import asyncio
import os
import sys

import moq

if os.environ.get("MOQ_LOG"):
    moq.log_level(os.environ["MOQ_LOG"])


def say(*words):
    print(*words, flush=True)


async def main():
    url, broadcast, track_name = sys.argv[1], sys.argv[2], sys.argv[3]
    groups, frames = int(sys.argv[4]), int(sys.argv[5])
    async with moq.Client(url, tls_verify=False, reconnect=False) as client:
        say("CONNECTED")
        producer = client.create_broadcast(broadcast)
        track = producer.publish_track(track_name)
        producer.announce()
        await track.used()
        say("SUBSCRIBED")
        for i in range(groups):
            group = track.append_group()
            for j in range(frames):
                group.write_frame(f"g{i}f{j}".encode())
            group.finish()
            await asyncio.sleep(0.02)
        say("PUBLISHED")
        await asyncio.sleep(3600)


async def bounded(seconds):
    await asyncio.wait_for(main(), seconds)


try:
    asyncio.run(bounded(float(sys.argv[6])))
except asyncio.TimeoutError:
    say("DONE timed out")
except Exception as e:  # noqa: BLE001 - report whatever moq raised
    say("ERROR", repr(e))
    sys.exit(1)
