"""Shared by the moq-rs (moq-net) interop scripts: line output and bounded runs.

Every script prints one fact per line on stdout (flushed), which the Rust tests read:
`LISTENING <addr>`, `FRAME <group> <payload>`, `DONE`, `ERROR <reason>`.
"""

import asyncio
import os
import sys

import moq

# MOQ_LOG=debug (or trace) turns on moq-net's own log, on stderr.
if os.environ.get("MOQ_LOG"):
    moq.log_level(os.environ["MOQ_LOG"])


def say(*words):
    print(*words, flush=True)


def run(main, seconds):
    """Runs `main()` for at most `seconds`; any failure prints ERROR and exits 1."""

    async def bounded():
        await asyncio.wait_for(main(), seconds)

    try:
        asyncio.run(bounded())
    except asyncio.TimeoutError:
        say("ERROR timed out after", seconds, "s")
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - report whatever moq raised
        say("ERROR", repr(e))
        sys.exit(1)


async def read_frames(track, count, timeout=5):
    """Reads `count` frames from a track, in group order, printing each."""
    got = 0
    while got < count:
        group = await asyncio.wait_for(track.next_group(), timeout)
        if group is None:
            raise RuntimeError(f"the track ended after {got} frames")
        while got < count:
            frame = await asyncio.wait_for(group.read_frame(), timeout)
            if frame is None:
                break
            say("FRAME", group.sequence, frame.payload.decode())
            got += 1


def publish_groups(track, groups, frames):
    """Writes `groups` groups of `frames` frames: payloads `g<i>f<j>`."""
    for i in range(groups):
        group = track.append_group()
        for j in range(frames):
            group.write_frame(f"g{i}f{j}".encode())
        group.finish()


async def publish_groups_paced(track, groups, frames, interval):
    """As `publish_groups`, one group every `interval` seconds."""
    for i in range(groups):
        group = track.append_group()
        for j in range(frames):
            group.write_frame(f"g{i}f{j}".encode())
        group.finish()
        await asyncio.sleep(interval)
