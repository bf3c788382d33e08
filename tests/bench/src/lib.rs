//! `azs-bench`: proves the speed of azs-usage with the real pieces.
//!
//! A measurement starts the stamp simulator in a process of its own, registers its stamps through the
//! `Registrar` (as `azs-usage stamp add` does), runs the real `Collector` over loopback HTTPS into a
//! fresh SQLite file in another process (so that process's peak memory is the collector's alone), and
//! checks every stored row against the simulator's ground truth. Optionally it measures pulling alone
//! and writing alone, to know which stage sets the ceiling.
//!
//! Follow one measurement: [`measure::measure`] -> [`sim`] (child) -> [`stages::collect`] (child,
//! timed by [`timing`]) -> verification -> [`stages::pull_only`] / [`stages::write_only`] (children)
//! -> [`report`]. The named runs and their targets are in [`scenarios`].

pub mod fleet;
pub mod measure;
pub mod process;
pub mod report;
pub mod scenarios;
pub mod sim;
pub mod stages;
pub mod timing;
pub mod workload;
