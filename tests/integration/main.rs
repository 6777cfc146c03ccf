//! Oort's integration tests: they run the real `oort` binary (and, for the conformance harness,
//! the real host) on wasm components built from source.

mod cache;
mod checkpoint;
mod cli;
mod common;
mod conformance;
mod console;
mod delivery;
mod dynamic;
mod fuzz;
mod hostile;
mod languages;
mod mqtt;
mod negative;
mod network;
mod redis_lookup;
mod reload;
mod restart;
mod sandbox;
mod serve;
mod shared;
mod stop;
mod tables;
mod wit;
