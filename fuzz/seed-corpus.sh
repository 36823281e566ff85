#!/usr/bin/env bash
# Writes the hex examples of the moq-lite-04 spec (§2, §4) as seed inputs for the fuzz
# targets, in the input layout each `moq_proto::fuzzing` function expects.
#
# Usage: fuzz/seed-corpus.sh [DIR]   (default: fuzz/corpus; the corpus is not committed)
set -euo pipefail

out="${1:-$(dirname "$0")/corpus}"
mkdir -p "$out"/{message_decode,varint,reassembly}

hex() { for b in "$@"; do printf "\\x$b"; done; }
str() { printf '%s' "$1"; }

# message_decode: one kind byte (0 ANNOUNCE_INTEREST, 1 ANNOUNCE, 2 SUBSCRIBE,
# 3 SUBSCRIBE_UPDATE, 4 subscribe response, 5 FETCH, 6 PROBE, 7 GOAWAY, 8 GROUP, 9 FRAME),
# then the message.
m="$out/message_decode"
{ hex 00 03 01 2f 00; } >"$m/announce-interest-root"
{ hex 00 08 06 2f 6c 69 76 65 2f 07; } >"$m/announce-interest-live"
{ hex 01 11 01 0e; str interop/server; hex 00; } >"$m/announce-active"
{ hex 01 0a 01 04 63 61 6d 31 02 2a 41 2c; } >"$m/announce-hops"
{ hex 01 07 00 04 63 61 6d 31 00; } >"$m/announce-ended"
{ hex 02 17 01 0f; str /interop/server; hex 00 00 00 00 00 00; } >"$m/subscribe-default"
{ hex 02 18 02 0a; str /live/cam1; hex 05; str video; hex 80 01 41 f4 0b 00; } >"$m/subscribe-full"
{ hex 03 05 10 00 00 00 15; } >"$m/subscribe-update"
{ hex 04 00 05 00 00 00 02 00; } >"$m/subscribe-ok"
{ hex 04 00 06 02 00 43 e8 00 00; } >"$m/subscribe-ok-latency"
{ hex 04 01 03 06 08 00; } >"$m/subscribe-drop"
{ hex 05 13 0f; str /interop/server; hex 00 00 00; } >"$m/fetch-default"
{ hex 05 14 0a; str /live/cam1; hex 05; str video; hex 40 41 2c; } >"$m/fetch-full"
{ hex 06 05 80 0f 42 40 00; } >"$m/probe-target"
{ hex 06 05 80 26 25 a0 23; } >"$m/probe-estimate"
{ hex 07 19 18; str https://next.example.com; } >"$m/goaway-redirect"
{ hex 07 01 00; } >"$m/goaway-empty"
{ hex 08 02 01 01; } >"$m/group-1-1"
{ hex 08 03 07 41 2c; } >"$m/group-7-300"
{ hex 09 05; str HELLO; } >"$m/frame-hello"

# varint: one split byte (where to cut the bytes into two chunks), then the varint.
v="$out/varint"
{ hex 00 00; } >"$v/zero"
{ hex 00 25; } >"$v/37"
{ hex 01 41 2c; } >"$v/300"
{ hex 01 7b bd; } >"$v/15293"
{ hex 02 80 0f 42 40; } >"$v/1000000"
{ hex 03 9d 7f 3e 7d; } >"$v/494878333"
{ hex 04 c2 19 7c 5e ff 14 e8 8c; } >"$v/151288809941952652"
{ hex 05 ff ff ff ff ff ff ff ff; } >"$v/max"
{ hex 00 40 25; } >"$v/non-minimal-2"

# reassembly: a control byte (bit 7 = FIN, low 5 bits = split count), two bytes per split
# offset, then the stream: type byte and messages.
r="$out/reassembly"
{ hex 82 00 01 00 04; hex 00 02 01 01 05; str HELLO; } >"$r/group-hello"
{ hex 81 00 05; hex 00 03 07 41 2c 00 03 01 02 03; } >"$r/group-two-frames"
{ hex 81 00 03; hex 01 03 01 2f 00 11 01 0e; str interop/server; hex 00; } >"$r/announce"
{ hex 82 00 02 00 13; hex 02 17 01 0f; str /interop/server; hex 00 00 00 00 00 00 05 10 00 00 00 15; } >"$r/subscribe-update"
{ hex 81 00 10; hex 03 13 0f; str /interop/server; hex 00 00 00 05; str HELLO; } >"$r/fetch-hello"
{ hex 80; hex 04 05 80 0f 42 40 00 05 80 26 25 a0 23; } >"$r/probe"
{ hex 81 00 01; hex 05 19 18; str https://next.example.com; } >"$r/goaway"
{ hex 83 00 01 00 02 00 09; hex 06 00 05 00 00 00 02 00 01 03 06 08 00; } >"$r/responses"
{ hex 01 00 04; hex 07 0a 01 04 63 61 6d 31 02 2a 41 2c 07 00 04 63 61 6d 31; } >"$r/announces-no-fin"

echo "seeded $out"
