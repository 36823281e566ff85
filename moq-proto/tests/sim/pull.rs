//! Readers pull (`Session::read_frame`): frames are decoded when read, unread bytes are
//! counted, and an end is kept for the reader.

use bytes::Bytes;

use super::common::{Lone, frame, path, typed};
use moq_proto::message::{GroupHeader, StreamType, SubscribeParams};
use moq_proto::{
    CommandError, Dir, EndReason, ErrorCode, Event, FrameRead, GroupSequence, Role, StreamId,
    SubscribeId,
};

/// A client subscribed to `/x` "t", with group 1 arrived: `frames` whole, then `partial`
/// bytes of one more. Nothing is read (the reader is paused).
fn group_arrived(frames: &[&[u8]], partial: &[u8]) -> (Lone, SubscribeId, StreamId) {
    let mut lone = Lone::new(Role::Client);
    lone.reader.paused = true;
    let id = lone
        .session
        .subscribe(path("/x"), "t", SubscribeParams::default())
        .unwrap();
    lone.commands();
    let mut bytes = typed(
        StreamType::Group,
        &GroupHeader {
            subscribe_id: id,
            sequence: GroupSequence(1),
        },
    );
    for f in frames {
        bytes.extend(frame(f));
    }
    bytes.extend_from_slice(partial);
    let group = lone.accept_with(Dir::Uni, &bytes);
    let events = lone.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::GroupReceived { stream, .. } if *stream == group)),
        "{events:?}"
    );
    (lone, id, group)
}

fn read(lone: &mut Lone, stream: StreamId) -> FrameRead {
    lone.session.read_frame(stream).unwrap()
}

#[test]
fn frames_wait_for_their_reader_and_are_counted_unread() {
    let (mut lone, _, group) = group_arrived(&[b"one", b"two"], &[0x05, b'a']);
    // Two frame headers, six payload bytes, and the part of a third, in one chunk: counted
    // as the datagram that chunk keeps alive.
    let pinned = moq_proto::PINNED_PER_CHUNK;
    assert_eq!(lone.session.unread_bytes(), pinned);
    assert_eq!(
        lone.session.stats().frames_received,
        0,
        "nothing decoded yet"
    );
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Frame(Bytes::from_static(b"one").into())
    );
    assert_eq!(
        lone.session.unread_bytes(),
        pinned,
        "the chunk is still held"
    );
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Frame(Bytes::from_static(b"two").into())
    );
    assert_eq!(read(&mut lone, group), FrameRead::Blocked);
    lone.data(group, b"bcde");
    assert_eq!(lone.session.unread_bytes(), 2 * pinned, "two chunks");
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Frame(Bytes::from_static(b"abcde").into())
    );
    assert_eq!(lone.session.unread_bytes(), 0);
    lone.fin(group);
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Ended(EndReason::Finished)
    );
    assert_eq!(lone.session.stats().frames_received, 3);
    // Read once, then forgotten.
    assert_eq!(
        lone.session.read_frame(group),
        Err(CommandError::UnknownStream(group))
    );
}

#[test]
fn an_end_the_session_decides_is_kept_for_the_reader() {
    let (mut lone, id, group) = group_arrived(&[b"lost"], &[]);
    lone.session.unsubscribe(id).unwrap();
    // Its bytes no longer count; the reader learns why, once.
    assert_eq!(lone.session.unread_bytes(), 0);
    assert_eq!(read(&mut lone, group), FrameRead::Ended(EndReason::Local));
    assert!(lone.session.read_frame(group).is_err());
}

#[test]
fn a_group_that_has_fully_arrived_outlives_its_subscription() {
    let (mut lone, id, group) = group_arrived(&[b"kept", b"whole"], &[]);
    lone.fin(group);
    lone.session.unsubscribe(id).unwrap();
    let stops: Vec<_> = lone
        .commands()
        .into_iter()
        .filter(|c| matches!(c, moq_proto::Command::Stop { id, .. } if *id == group))
        .collect();
    assert_eq!(stops, vec![], "a complete group is not stopped");
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Frame(Bytes::from_static(b"kept").into())
    );
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Frame(Bytes::from_static(b"whole").into())
    );
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Ended(EndReason::Finished)
    );
}

#[test]
fn a_reset_comes_after_the_whole_frames_before_it() {
    let (mut lone, _, group) = group_arrived(&[b"first"], &[0x09, 1, 2]);
    lone.reset(group, ErrorCode(0x7));
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Frame(Bytes::from_static(b"first").into())
    );
    assert_eq!(
        read(&mut lone, group),
        FrameRead::Ended(EndReason::PeerReset(ErrorCode(0x7)))
    );
    assert_eq!(lone.session.unread_bytes(), 0);
    assert!(
        !lone
            .commands()
            .iter()
            .any(|c| matches!(c, moq_proto::Command::Stop { .. })),
        "a reset stream is not stopped"
    );
}

#[test]
fn cancelling_forgets_the_group_and_its_unread_bytes() {
    let (mut lone, _, group) = group_arrived(&[b"never read"], &[]);
    assert!(lone.session.unread_bytes() > 0);
    lone.session.cancel_group(group, ErrorCode(0x1)).unwrap();
    assert_eq!(lone.session.unread_bytes(), 0);
    assert_eq!(
        lone.session.read_frame(group),
        Err(CommandError::UnknownStream(group))
    );
}

#[test]
fn after_the_close_every_read_answers_with_it() {
    let (mut lone, _, group) = group_arrived(&[b"x"], &[]);
    lone.session.close(ErrorCode(0x0), "bye");
    assert!(matches!(
        read(&mut lone, group),
        FrameRead::Ended(EndReason::SessionClosed(_))
    ));
    assert_eq!(lone.session.unread_bytes(), 0);
}
