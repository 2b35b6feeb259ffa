//! What a NAT remembers of one TCP connection through a mapping: enough to tell
//! established from transitory (RFC 5382 section 5).

use crate::packet::TcpFlags;

/// Flags seen on one connection (one remote endpoint) of a TCP mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpSession {
    syn_out: bool,
    syn_in: bool,
    fin_out: bool,
    fin_in: bool,
    rst: bool,
}

impl TcpSession {
    /// Records a segment; `outbound` is from the inside.
    pub(crate) fn observe(&mut self, flags: TcpFlags, outbound: bool) {
        // A fresh SYN after the connection ended starts a new connection.
        if flags.syn() && !flags.ack() && (self.rst || self.fin_in || self.fin_out) {
            *self = TcpSession::default();
        }
        if flags.syn() {
            if outbound {
                self.syn_out = true;
            } else {
                self.syn_in = true;
            }
        }
        if flags.fin() {
            if outbound {
                self.fin_out = true;
            } else {
                self.fin_in = true;
            }
        }
        if flags.rst() {
            self.rst = true;
        }
    }

    /// A SYN went each way and no FIN or RST followed.
    pub(crate) fn established(&self) -> bool {
        self.syn_out && self.syn_in && !self.fin_out && !self.fin_in && !self.rst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut s = TcpSession::default();
        s.observe(TcpFlags::SYN, true);
        assert!(!s.established());
        s.observe(TcpFlags::SYN | TcpFlags::ACK, false);
        assert!(s.established());
        s.observe(TcpFlags::FIN | TcpFlags::ACK, true);
        assert!(!s.established());
        s.observe(TcpFlags::SYN, true);
        s.observe(TcpFlags::SYN, false);
        assert!(s.established());
        s.observe(TcpFlags::RST, false);
        assert!(!s.established());
    }
}
