//! Scenario tests on the simulated [`pair::Pair`]: every flow, without sockets or sleeps.

mod pair;
mod scenarios;

mod announce;
mod close;
mod common;
mod fetch;
mod goaway;
mod groups;
mod incomplete;
mod ledger;
mod model;
mod probe;
mod pull;
mod subscribe;
