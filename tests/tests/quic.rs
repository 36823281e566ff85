//! The scenario suite over native QUIC (quinn) on loopback.

moq_tests::scenario_suite!(moq_tests::Quic);
