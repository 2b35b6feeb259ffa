//! TCP segment fields: flags, sequence and acknowledgment numbers, window, payload.

use bytes::Bytes;
use std::fmt;
use std::ops::BitOr;

/// A set of TCP control flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No flag.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN: the sender has no more data.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN: synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST: reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// ACK: the acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// SYN is set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// ACK is set.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// FIN is set.
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// RST is set.
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::SYN, "S"),
            (Self::ACK, "."),
            (Self::FIN, "F"),
            (Self::RST, "R"),
        ];
        for (flag, name) in names {
            if self.contains(flag) {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// A TCP segment without options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpSegment {
    /// Control flags.
    pub flags: TcpFlags,
    /// Sequence number of the first octet (or of the SYN).
    pub seq: u32,
    /// Next sequence number the sender expects, significant with ACK.
    pub ack: u32,
    /// Receive window in octets.
    pub window: u16,
    /// Data.
    pub payload: Bytes,
}

impl TcpSegment {
    /// A segment without data.
    pub fn control(flags: TcpFlags, seq: u32, ack: u32) -> Self {
        Self {
            flags,
            seq,
            ack,
            window: u16::MAX,
            payload: Bytes::new(),
        }
    }

    /// Sequence space the segment occupies: data plus one for SYN and one for FIN.
    pub fn seq_len(&self) -> u32 {
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        len.saturating_add(u32::from(self.flags.syn()))
            .saturating_add(u32::from(self.flags.fin()))
    }
}

impl fmt::Display for TcpSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] seq={} ack={} len={}",
            self.flags,
            self.seq,
            self.ack,
            self.payload.len()
        )
    }
}
