//! Codec micro-benchmarks: nanoseconds and heap allocations per operation.
//!
//! A plain timing loop (no benchmark framework): each row is calibrated to run for about
//! 0.2 s, and a counting global allocator (`stats_alloc` wrapping `System`; the workspace
//! forbids the `unsafe` a hand-written one needs) reports allocations per operation.
//!
//! Run with `cargo bench -p moq-proto --bench codec`; pass a word to run only the rows whose
//! name contains it (`cargo bench -p moq-proto --bench codec -- frame`).
// Benchmarks read the wall clock; the core never does (see moq-proto/clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use moq_proto::message::{
    Announce, AnnounceInterest, AnnounceStatus, Fetch, FrameHeader, GoAway, GroupHeader, Probe,
    Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse, SubscribeUpdate,
};
use moq_proto::{
    BroadcastPath, GroupSequence, HopId, Limits, Message, PathPrefix, StreamDecoder, SubscribeId,
    VarInt,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How long each measured loop runs.
const TARGET: Duration = Duration::from_millis(200);

/// The relay path used by every message that carries one.
const PATH: &str = "relay.example.com/eu-west/cluster-a";

/// One measured row.
struct Bench {
    filter: Option<String>,
}

impl Bench {
    /// Times `op` and prints ns/op, allocations/op and, given `bytes` per op, MB/s.
    fn run(&self, name: &str, bytes: Option<usize>, mut op: impl FnMut()) {
        if self.filter.as_deref().is_some_and(|f| !name.contains(f)) {
            return;
        }
        // Calibrate (and warm up): double the batch until it takes a tenth of the target.
        let mut iters: u64 = 1;
        let elapsed = loop {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            let elapsed = start.elapsed();
            if elapsed >= TARGET / 10 || iters >= 1 << 40 {
                break elapsed;
            }
            iters *= 2;
        };
        let per_op = elapsed.as_secs_f64() / iters as f64;
        let iters = ((TARGET.as_secs_f64() / per_op) as u64).max(1);

        let region = Region::new(GLOBAL);
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        let elapsed = start.elapsed();
        let stats = region.change();

        let ns = elapsed.as_nanos() as f64 / iters as f64;
        let allocs = (stats.allocations + stats.reallocations) as f64 / iters as f64;
        let rate = bytes.map_or(String::new(), |b| {
            format!("{:>10.0}", b as f64 / (ns / 1e9) / 1e6)
        });
        println!("{name:<44} {ns:>10.1} {allocs:>10.2} {rate}");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else that is not a flag is a name filter.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let b = Bench { filter };
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "benchmark", "ns/op", "allocs/op", "MB/s"
    );
    varints(&b);
    messages(&b);
    frames(&b);
}

fn varints(b: &Bench) {
    let values: [u64; 4] = [37, 15_293, 494_878_333, 151_288_809_941_952_652];
    for v in values {
        let v = VarInt::from_u64(v).expect("in range");
        let mut out = [0u8; 8];
        b.run(&format!("varint encode {}B", v.size()), None, || {
            let mut buf = &mut out[..];
            black_box(v).encode(&mut buf);
            black_box(&out);
        });
        let mut encoded = Vec::new();
        v.encode(&mut encoded);
        b.run(&format!("varint decode {}B", v.size()), None, || {
            let mut buf = black_box(encoded.as_slice());
            black_box(VarInt::decode(&mut buf).expect("whole varint"));
        });
    }
}

/// Encode into a reused buffer (no allocation by the codec itself) and decode from a slice.
fn message<M: Message>(b: &Bench, name: &str, msg: &M) {
    let limits = Limits::default();
    let encoded = msg.to_bytes().expect("encodable");
    let mut buf = Vec::with_capacity(encoded.len());
    b.run(&format!("{name} encode ({}B)", encoded.len()), None, || {
        buf.clear();
        black_box(msg).encode(&mut buf).expect("encodable");
        black_box(&buf);
    });
    b.run(&format!("{name} decode ({}B)", encoded.len()), None, || {
        black_box(M::decode(black_box(&encoded), &limits).expect("valid"));
    });
}

/// The subscribe responses carry their own type byte, so they are not a [`Message`].
fn response(b: &Bench, name: &str, msg: &SubscribeResponse) {
    let limits = Limits::default();
    let mut encoded = Vec::new();
    msg.encode(&mut encoded).expect("encodable");
    let mut buf = Vec::with_capacity(encoded.len());
    b.run(&format!("{name} encode ({}B)", encoded.len()), None, || {
        buf.clear();
        black_box(msg).encode(&mut buf).expect("encodable");
        black_box(&buf);
    });
    b.run(&format!("{name} decode ({}B)", encoded.len()), None, || {
        black_box(SubscribeResponse::decode(black_box(&encoded), &limits).expect("valid"));
    });
}

fn messages(b: &Bench) {
    let params = SubscribeParams {
        priority: 0x80,
        ordered: true,
        max_latency: Duration::from_millis(500),
        start: Some(GroupSequence((1 << 24) + 11)),
        end: None,
    };
    message(
        b,
        "ANNOUNCE_INTEREST",
        &AnnounceInterest {
            prefix: PathPrefix::new("relay.example.com/eu-west"),
            exclude_hop: HopId((1 << 28) + 5),
        },
    );
    message(
        b,
        "ANNOUNCE",
        &Announce {
            status: AnnounceStatus::Active,
            suffix: "cluster-a".to_owned(),
            hops: vec![HopId((1 << 20) + 1), HopId((1 << 28) + 2)],
        },
    );
    message(
        b,
        "SUBSCRIBE",
        &Subscribe {
            id: SubscribeId((1 << 20) + 7),
            path: BroadcastPath::new(PATH),
            track: "video".to_owned(),
            params,
        },
    );
    message(b, "SUBSCRIBE_UPDATE", &SubscribeUpdate { params });
    response(
        b,
        "SUBSCRIBE_OK",
        &SubscribeResponse::Ok(SubscribeOk { params }),
    );
    response(
        b,
        "SUBSCRIBE_DROP",
        &SubscribeResponse::Drop(SubscribeDrop::new(
            GroupSequence(1 << 24),
            GroupSequence((1 << 24) + 3),
            0,
        )),
    );
    message(
        b,
        "FETCH",
        &Fetch {
            path: BroadcastPath::new(PATH),
            track: "video".to_owned(),
            priority: 0x40,
            group: GroupSequence((1 << 26) + 300),
        },
    );
    message(
        b,
        "PROBE",
        &Probe {
            bitrate: 2_500_000,
            rtt: Duration::from_millis(35),
        },
    );
    message(
        b,
        "GOAWAY",
        &GoAway {
            uri: "https://relay.example.com/eu-west/cluster-b".to_owned(),
        },
    );
    message(
        b,
        "GROUP",
        &GroupHeader {
            subscribe_id: SubscribeId((1 << 20) + 7),
            sequence: GroupSequence((1 << 27) + 3),
        },
    );
}

fn frames(b: &Bench) {
    let limits = Limits::default();
    for (label, size) in [
        ("64B", 64),
        ("1KiB", 1024),
        ("16KiB", 16 << 10),
        ("64KiB", 64 << 10),
    ] {
        let payload = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());

        // How a stream writes a frame: the header into a small buffer, the payload as its own
        // `Bytes` (a reference count, never a copy).
        let mut header = Vec::with_capacity(8);
        b.run(
            &format!("frame encode {label} (header + Bytes)"),
            Some(size),
            || {
                header.clear();
                let h = FrameHeader::for_payload(black_box(&payload)).expect("small");
                h.encode(&mut header);
                black_box((&header, payload.clone()));
            },
        );

        // One contiguous copy, as `FrameHeader::encode_frame` does for tests.
        let mut whole = Vec::with_capacity(size + 8);
        b.run(&format!("frame encode {label} (copy)"), Some(size), || {
            whole.clear();
            let h = FrameHeader::for_payload(black_box(&payload)).expect("small");
            h.encode(&mut whole);
            whole.put_slice(&payload);
            black_box(&whole);
        });

        // Decoding through the stream decoder from one received chunk: zero-copy.
        let chunk = FrameHeader::encode_frame(&payload).expect("small");
        let mut decoder = StreamDecoder::new();
        decoder.push(chunk.clone());
        let first = decoder
            .decode_frame(&limits)
            .expect("valid")
            .expect("whole");
        let chunk_range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        assert!(
            chunk_range.contains(&(first.as_ptr() as usize)),
            "frame decode copied the payload"
        );
        b.run(
            &format!("frame decode {label} (StreamDecoder)"),
            Some(size),
            || {
                decoder.push(black_box(chunk.clone()));
                let frame = decoder
                    .decode_frame(&limits)
                    .expect("valid")
                    .expect("whole");
                black_box(frame);
            },
        );
    }
}
