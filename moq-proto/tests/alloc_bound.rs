//! Hostile length prefixes and counts must not make the decoder allocate what they announce
//! (spec §8: "Our decoders never allocate from a peer-supplied length or count before the
//! bytes are present").
//!
//! The workspace forbids `unsafe_code`, so this binary cannot install a counting
//! `#[global_allocator]` (implementing `GlobalAlloc` is unsafe). It measures the process's
//! address space instead: `VmSize` and its high-water mark `VmPeak` from `/proc/self/status`.
//! The test re-runs itself in a child process with glibc told to use one malloc arena
//! (`MALLOC_ARENA_MAX=1`: no 64 MiB per-thread arena reservations muddying the peak) and to
//! serve every allocation of 64 KiB or more with `mmap` (`MALLOC_MMAP_THRESHOLD_`), so any
//! such allocation raises `VmPeak` even when it is freed at once. A decoder that reserved a
//! peer's 1 MiB, 8 MB or 50 MiB would show; a canary allocation at the end proves the probe
//! sees a real allocation.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::hint::black_box;
use std::process::Command;

use bytes::Bytes;
use moq_proto::message::{
    Announce, AnnounceInterest, Fetch, GoAway, GroupHeader, Probe, Subscribe, SubscribeUpdate,
};
use moq_proto::{DecodeError, Limits, Message, StreamDecoder, VarInt};

const KIB: u64 = 1024;

/// Largest growth of the address space tolerated during one decode. The hostile inputs below
/// announce at least 1 MiB; the decoder's own bookkeeping is a few hundred bytes.
const TOLERANCE: u64 = 256 * KIB;

/// `(VmSize, VmPeak)` in bytes.
fn vm() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * KIB
    };
    (field("VmSize:"), field("VmPeak:"))
}

/// Runs `f` and returns by how much the address-space high-water mark rose above the size
/// before it.
fn peak_growth(f: impl FnOnce()) -> u64 {
    let (size, _) = vm();
    f();
    let (_, peak) = vm();
    peak.saturating_sub(size)
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    VarInt::from_u64(v).unwrap().encode(&mut out);
    out
}

fn decoder(bytes: &[u8]) -> StreamDecoder {
    let mut dec = StreamDecoder::new();
    dec.push(Bytes::copy_from_slice(bytes));
    dec
}

/// Runs one hostile decode and fails if the address space grew by more than the tolerance.
fn check(name: &str, f: impl FnOnce()) {
    let growth = peak_growth(f);
    assert!(
        growth < TOLERANCE,
        "{name}: address space grew by {growth} bytes"
    );
}

/// A message prefix of 2^62 − 1, through both decode paths.
fn huge<M: Message>() {
    let wire = [0xffu8; 8];
    assert!(matches!(
        M::decode(&wire, &Limits::default()),
        Err(DecodeError::MessageTooLong { .. })
    ));
    assert!(matches!(
        decoder(&wire).decode::<M>(&Limits::default()),
        Err(DecodeError::MessageTooLong { .. })
    ));
}

/// Set in the child process that does the measuring.
const CHILD: &str = "MOQ_PROTO_ALLOC_PROBE_CHILD";
const NAME: &str = "hostile_lengths_and_counts_allocate_nothing_big";

#[test]
fn hostile_lengths_and_counts_allocate_nothing_big() {
    if std::env::var_os(CHILD).is_some() {
        measure();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("MALLOC_ARENA_MAX", "1")
        .env("MALLOC_MMAP_THRESHOLD_", "65536")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child did not run the test:\n{stdout}"
    );
}

fn measure() {
    // Warm up the allocator and the probe itself.
    let _ = black_box(vm());
    let _ = black_box(decoder(&[0; 64]).decode::<GoAway>(&Limits::default()));
    let (size, peak) = vm();
    eprintln!("baseline VmSize {size} B, VmPeak {peak} B");
    assert!(
        peak - size < TOLERANCE,
        "probe unusable: VmPeak already {} bytes above VmSize",
        peak - size
    );

    let max = Limits::MAX_FRAME_SIZE as u64;
    check("2^62-1 length on every message", || {
        huge::<AnnounceInterest>();
        huge::<Announce>();
        huge::<Subscribe>();
        huge::<SubscribeUpdate>();
        huge::<Fetch>();
        huge::<Probe>();
        huge::<GoAway>();
        huge::<GroupHeader>();
        for ty in [0u8, 1] {
            let mut wire = vec![ty];
            wire.extend_from_slice(&[0xff; 8]);
            assert!(decoder(&wire).decode_response(&Limits::default()).is_err());
        }
    });
    check("2^62-1 frame length", || {
        let got = decoder(&[0xff; 8]).decode_frame(&Limits::default());
        assert!(matches!(got, Err(DecodeError::FrameTooLarge { .. })));
    });
    check("50 MiB + 1 frame header alone", move || {
        let got = decoder(&varint(max + 1)).decode_frame(&Limits::default());
        assert!(matches!(got, Err(DecodeError::FrameTooLarge { .. })));
    });
    check(
        "50 MiB frame header alone, then part of the payload",
        move || {
            let mut dec = decoder(&varint(max));
            assert_eq!(dec.decode_frame(&Limits::default()), Ok(None));
            dec.push(Bytes::from_static(&[0; 100]));
            assert_eq!(dec.decode_frame(&Limits::default()), Ok(None));
        },
    );
    check("1 MiB control message header alone", || {
        let wire = varint(Limits::MAX_MESSAGE_SIZE as u64);
        let mut dec = decoder(&wire);
        assert_eq!(dec.decode::<GoAway>(&Limits::default()), Ok(None));
        dec.push(Bytes::from_static(&[0x00]));
        assert_eq!(dec.decode::<GoAway>(&Limits::default()), Ok(None));
        assert_eq!(GoAway::decode(&wire, &Limits::default()), Ok(None));
    });
    check("ANNOUNCE hop count 10^6 with 3 bytes", || {
        let wire = [0x09, 0x01, 0x00, 0x80, 0x0f, 0x42, 0x40, 0x2a, 0x2a, 0x2a];
        assert!(matches!(
            Announce::decode(&wire, &Limits::default()),
            Err(DecodeError::TooManyHops { .. })
        ));
        // With no hop limit at all, the count is still clamped by the bytes present.
        let unlimited = Limits {
            max_hops: usize::MAX,
            ..Limits::default()
        };
        assert!(matches!(
            Announce::decode(&wire, &unlimited),
            Err(DecodeError::Truncated { .. })
        ));
    });
    check("string length 2^62-1 inside a small message", || {
        let mut wire = vec![0x08];
        wire.extend_from_slice(&[0xff; 8]);
        let unlimited = Limits {
            max_string_len: usize::MAX,
            ..Limits::default()
        };
        assert!(GoAway::decode(&wire, &Limits::default()).is_err());
        assert!(GoAway::decode(&wire, &unlimited).is_err());
    });

    // The canary, last (it raises the high-water mark for good): the probe must see a real
    // 8 MiB allocation, so the checks above could fail.
    let growth = peak_growth(|| {
        let _ = black_box(Vec::<u8>::with_capacity(8 << 20));
    });
    assert!(
        growth >= 8 << 20,
        "the probe missed an 8 MiB allocation ({growth} bytes)"
    );
}
