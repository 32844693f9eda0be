//! oda-sim against real HTTP: conformance with the ODA API's JSON forms,
//! the ground truth, faults and the command line.

mod cli;
mod conformance;
mod faults;
mod ground_truth;
mod helpers;
mod paging_problem;
mod sqlserver;
