//! Scenario tests on the simulated [`pair::Pair`]: every flow, without sockets or sleeps.

mod pair;
mod scenarios;
