//! The Linux pieces that `oxkit-sandbox` (build steps) and `oxkit-init` (the in-image init)
//! both need, kept in one place so that each `unsafe` block and its safety argument exists
//! once:
//!
//! - [`caps`]: capability names and numbers;
//! - [`child`]: the raw clone, and the steps a cloned child takes before `execve` that are
//!   the same in both (signal dispositions, close-on-exec, loopback, setgroups, writing a
//!   file, `execve` with execvp's rules, `_exit`); all async-signal-safe: no allocation, no
//!   locks, no panics;
//! - [`report`]: how that child tells its parent which step failed, over a close-on-exec pipe;
//! - [`mount`]: mount flags as text, for the messages both print.
//!
//! Deliberately tiny: the init is a static binary inside every image, so this crate depends on
//! rustix and libc only and knows nothing else of oxkit.

#![allow(unsafe_code)]

pub mod caps;
pub mod child;
pub mod mount;
pub mod report;
