//! What runs on a host: its sockets, and the events an application sees.
//!
//! An application on a host is driven from outside: it calls the socket methods of
//! [`crate::World`] and reads [`HostEvent`]s from [`crate::World::poll_event`]. Timers
//! let it wake up at a chosen simulated time.

pub(crate) mod stack;

use std::fmt;

use crate::tcp::TcpEvent;
use crate::udp::UdpEvent;

/// An application timer, unique in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub(crate) u64);

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timer{}", self.0)
    }
}

/// An event for the application on a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostEvent {
    /// A TCP socket event.
    Tcp(TcpEvent),
    /// A UDP socket event.
    Udp(UdpEvent),
    /// A timer set with [`crate::World::set_timer`] fired.
    Timer {
        /// The timer.
        id: TimerId,
        /// The value given when it was set.
        token: u64,
    },
}
