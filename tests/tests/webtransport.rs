//! The scenario suite over WebTransport (wtransport, HTTP/3) on loopback: the same test code
//! as `quic.rs`, every scenario included (`peer_vanishes` gets the same idle timeout and UDP
//! relay through `Options::quic`).

moq_tests::scenario_suite!(moq_tests::WebTransport);
