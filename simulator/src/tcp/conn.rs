//! One TCP connection: the state machine of RFC 9293 with Linux's choices.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;

use super::seq;
use super::{CloseReason, ConnId, TcpConfig, TcpEvent, TcpState};
use crate::packet::{Packet, TcpFlags, TcpSegment};
use crate::time::SimTime;

/// Packets and events a connection produced.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) packets: Vec<Packet>,
    pub(crate) events: Vec<TcpEvent>,
}

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `tcp_connect`.
    Active,
    /// A listener, on a SYN.
    Passive,
}

/// Why the application may not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotWritable;

/// A data or FIN segment sent and not yet acknowledged.
#[derive(Debug, Clone)]
struct Sent {
    seq: u32,
    data: Bytes,
    fin: bool,
    sent_at: SimTime,
    retransmitted: bool,
}

impl Sent {
    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(len32(&self.data))
            .wrapping_add(u32::from(self.fin))
    }
}

/// One connection.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    pub(crate) state: TcpState,
    origin: Origin,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_wnd: u32,
    irs: u32,
    rcv_nxt: u32,
    window: u16,
    mss: u16,
    unsent: VecDeque<Bytes>,
    in_flight: VecDeque<Sent>,
    close_requested: bool,
    fin_sent: bool,
    syn_sent_at: SimTime,
    rto: Duration,
    retries: u32,
    /// Smoothed RTT and its variation (RFC 6298), once sampled.
    rtt: Option<(Duration, Duration)>,
    rtx_at: Option<SimTime>,
    /// TIME_WAIT end, or the FIN_WAIT_2 timeout.
    linger_at: Option<SimTime>,
    /// The earliest timer event the world has queued for this connection.
    pub(crate) armed: Option<SimTime>,
    announced: bool,
}

impl Conn {
    fn blank(
        id: ConnId,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        origin: Origin,
        iss: u32,
        now: SimTime,
        cfg: &TcpConfig,
    ) -> Self {
        Self {
            id,
            local,
            remote,
            state: TcpState::SynSent,
            origin,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            snd_wnd: u32::from(u16::MAX),
            irs: 0,
            rcv_nxt: 0,
            window: cfg.window.max(1),
            mss: cfg.mss.max(1),
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            close_requested: false,
            fin_sent: false,
            syn_sent_at: now,
            rto: cfg.initial_rto,
            retries: 0,
            rtt: None,
            rtx_at: Some(now + cfg.initial_rto),
            linger_at: None,
            armed: None,
            announced: false,
        }
    }

    /// Opens a connection: sends a SYN.
    pub(crate) fn connect(
        id: ConnId,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: u32,
        now: SimTime,
        cfg: &TcpConfig,
        out: &mut Output,
    ) -> Self {
        let conn = Self::blank(id, local, remote, Origin::Active, iss, now, cfg);
        conn.send_control(TcpFlags::SYN, conn.iss, out);
        conn
    }

    /// Answers a SYN that reached a listener: sends a SYN-ACK.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept(
        id: ConnId,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpSegment,
        iss: u32,
        now: SimTime,
        cfg: &TcpConfig,
        out: &mut Output,
    ) -> Self {
        let mut conn = Self::blank(id, local, remote, Origin::Passive, iss, now, cfg);
        conn.state = TcpState::SynReceived;
        conn.irs = syn.seq;
        conn.rcv_nxt = syn.seq.wrapping_add(1);
        conn.snd_wnd = u32::from(syn.window);
        conn.send_control(TcpFlags::SYN | TcpFlags::ACK, conn.iss, out);
        conn
    }

    /// The next instant [`Conn::on_timer`] has work to do.
    pub(crate) fn deadline(&self) -> Option<SimTime> {
        match (self.rtx_at, self.linger_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues bytes for sending.
    pub(crate) fn send(
        &mut self,
        now: SimTime,
        data: Bytes,
        out: &mut Output,
    ) -> Result<(), NotWritable> {
        let open = matches!(
            self.state,
            TcpState::SynSent | TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
        );
        if !open || self.close_requested {
            return Err(NotWritable);
        }
        if !data.is_empty() {
            self.unsent.push_back(data);
            self.push_data(now, out);
        }
        Ok(())
    }

    /// Closes the sending side (FIN after queued data). A connection not yet
    /// synchronized with its peer is discarded.
    pub(crate) fn close(&mut self, now: SimTime, out: &mut Output) {
        match self.state {
            TcpState::SynSent => self.discard(),
            TcpState::SynReceived | TcpState::Established | TcpState::CloseWait => {
                self.close_requested = true;
                self.push_data(now, out);
            }
            _ => {}
        }
    }

    /// Resets the connection: sends RST when the peer knows of it, reports nothing.
    pub(crate) fn abort(&mut self, out: &mut Output) {
        if !matches!(
            self.state,
            TcpState::SynSent | TcpState::TimeWait | TcpState::Closed
        ) {
            self.send_control(TcpFlags::RST, self.snd_nxt, out);
        }
        self.discard();
    }

    /// Aborts a connect after an ICMP error (Linux does so in SYN_SENT and SYN_RCVD).
    pub(crate) fn on_icmp(&mut self, out: &mut Output) {
        let opening = self.state == TcpState::SynSent
            || (self.state == TcpState::SynReceived && self.origin == Origin::Active);
        if opening {
            self.finish(CloseReason::Unreachable, out);
        }
    }

    /// Processes a segment addressed to this connection.
    pub(crate) fn on_segment(
        &mut self,
        now: SimTime,
        seg: &TcpSegment,
        cfg: &TcpConfig,
        out: &mut Output,
    ) {
        match self.state {
            TcpState::Closed => return,
            TcpState::SynSent => return self.on_segment_syn_sent(now, seg, out),
            _ => {}
        }
        let f = seg.flags;
        if self.state == TcpState::SynReceived && f.syn() {
            // Simultaneous open: the peer's SYN-ACK crossed ours (Linux accepts it).
            if f.ack() && seg.seq == self.irs && seg.ack == self.snd_nxt {
                self.snd_una = seg.ack;
                self.snd_wnd = u32::from(seg.window);
                self.establish(now, out);
                return;
            }
            // The peer did not get our SYN-ACK and sent its SYN again.
            if !f.ack() && seg.seq == self.irs {
                self.send_control(TcpFlags::SYN | TcpFlags::ACK, self.iss, out);
                return;
            }
        }
        if !self.acceptable(seg) {
            if !f.rst() {
                self.send_ack(out);
            }
            return;
        }
        if f.rst() {
            return self.on_rst(seg, out);
        }
        if f.syn() {
            // RFC 5961: a SYN in the window gets a challenge ACK.
            self.send_ack(out);
            return;
        }
        if !f.ack() {
            return;
        }
        if self.state == TcpState::SynReceived {
            if seq::lt(self.snd_una, seg.ack) && seq::le(seg.ack, self.snd_nxt) {
                self.snd_una = seg.ack;
                self.establish(now, out);
            } else {
                self.send_control(TcpFlags::RST, seg.ack, out);
                return;
            }
        }
        if seq::gt(seg.ack, self.snd_nxt) {
            self.send_ack(out);
            return;
        }
        self.snd_wnd = u32::from(seg.window);
        if seq::gt(seg.ack, self.snd_una) {
            self.on_ack(now, seg.ack, cfg);
        }
        let fin_acked = self.fin_sent && self.snd_una == self.snd_nxt;
        match self.state {
            TcpState::FinWait1 if fin_acked => {
                self.state = TcpState::FinWait2;
                self.linger_at = Some(now + cfg.time_wait);
            }
            TcpState::Closing if fin_acked => return self.enter_time_wait(now, cfg, out),
            TcpState::LastAck if fin_acked => return self.finish(CloseReason::Fin, out),
            _ => {}
        }
        let need_ack = self.on_payload(now, seg, cfg, out);
        if need_ack {
            self.send_ack(out);
        }
        self.push_data(now, out);
    }

    /// Processes a timer expiry.
    pub(crate) fn on_timer(&mut self, now: SimTime, cfg: &TcpConfig, out: &mut Output) {
        if self.linger_at.is_some_and(|t| t <= now) {
            self.linger_at = None;
            match self.state {
                TcpState::FinWait2 => self.finish(CloseReason::Timeout, out),
                _ => self.discard(),
            }
            return;
        }
        if self.rtx_at.is_none_or(|t| t > now) {
            return;
        }
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => {
                let limit = match self.origin {
                    Origin::Active => cfg.syn_retries,
                    Origin::Passive => cfg.synack_retries,
                };
                if self.retries >= limit {
                    return self.finish(CloseReason::Timeout, out);
                }
                self.back_off(cfg);
                let flags = match self.state {
                    TcpState::SynSent => TcpFlags::SYN,
                    _ => TcpFlags::SYN | TcpFlags::ACK,
                };
                self.send_control(flags, self.iss, out);
                self.rtx_at = Some(now + self.rto);
            }
            _ => {
                if self.in_flight.is_empty() {
                    self.rtx_at = None;
                    return;
                }
                if self.retries >= cfg.data_retries {
                    return self.finish(CloseReason::Timeout, out);
                }
                self.back_off(cfg);
                // Go-Back-N: everything unacknowledged goes again.
                for i in 0..self.in_flight.len() {
                    let Some(sent) = self.in_flight.get_mut(i) else {
                        break;
                    };
                    sent.retransmitted = true;
                    sent.sent_at = now;
                    let (seq, data, fin) = (sent.seq, sent.data.clone(), sent.fin);
                    let flags = if fin {
                        TcpFlags::ACK | TcpFlags::FIN
                    } else {
                        TcpFlags::ACK
                    };
                    out.packets.push(self.packet(flags, seq, data));
                }
                self.rtx_at = Some(now + self.rto);
            }
        }
    }

    fn on_segment_syn_sent(&mut self, now: SimTime, seg: &TcpSegment, out: &mut Output) {
        let f = seg.flags;
        if f.ack() && (seq::le(seg.ack, self.iss) || seq::gt(seg.ack, self.snd_nxt)) {
            if !f.rst() {
                self.send_control(TcpFlags::RST, seg.ack, out);
            }
            return;
        }
        if f.rst() {
            if f.ack() {
                self.finish(CloseReason::Refused, out);
            }
            return;
        }
        if !f.syn() {
            return;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.snd_wnd = u32::from(seg.window);
        if f.ack() {
            self.snd_una = seg.ack;
            self.send_ack(out);
            self.establish(now, out);
        } else {
            // Simultaneous open: SYN crossed SYN.
            self.state = TcpState::SynReceived;
            self.send_control(TcpFlags::SYN | TcpFlags::ACK, self.iss, out);
            self.rtx_at = Some(now + self.rto);
        }
    }

    fn on_rst(&mut self, seg: &TcpSegment, out: &mut Output) {
        // RFC 5961: only an exact RST resets; others in the window get a challenge ACK.
        if seg.seq != self.rcv_nxt {
            self.send_ack(out);
            return;
        }
        match (self.state, self.origin) {
            (TcpState::SynReceived, Origin::Passive) => self.discard(),
            (TcpState::SynReceived, Origin::Active) => self.finish(CloseReason::Refused, out),
            (TcpState::TimeWait, _) => self.discard(),
            _ => self.finish(CloseReason::Reset, out),
        }
    }

    /// Data and FIN of an acceptable segment; whether an ACK is due.
    fn on_payload(
        &mut self,
        now: SimTime,
        seg: &TcpSegment,
        cfg: &TcpConfig,
        out: &mut Output,
    ) -> bool {
        let mut need_ack = false;
        let len = len32(&seg.payload);
        let receiving = matches!(
            self.state,
            TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2
        );
        if len > 0 && receiving {
            let end = seg.seq.wrapping_add(len);
            if seq::le(seg.seq, self.rcv_nxt) && seq::gt(end, self.rcv_nxt) {
                let skip = self.rcv_nxt.wrapping_sub(seg.seq) as usize;
                let bytes = seg.payload.slice(skip..);
                self.rcv_nxt = end;
                out.events.push(TcpEvent::Data {
                    conn: self.id,
                    bytes,
                });
            }
            need_ack = true;
        }
        if seg.flags.fin() && seg.seq.wrapping_add(len) == self.rcv_nxt {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            need_ack = true;
            let fin_acked = self.fin_sent && self.snd_una == self.snd_nxt;
            match self.state {
                TcpState::Established => {
                    self.state = TcpState::CloseWait;
                    out.events.push(TcpEvent::Eof { conn: self.id });
                }
                TcpState::FinWait1 => {
                    out.events.push(TcpEvent::Eof { conn: self.id });
                    if fin_acked {
                        self.send_ack(out);
                        self.enter_time_wait(now, cfg, out);
                        return false;
                    }
                    self.state = TcpState::Closing;
                }
                TcpState::FinWait2 => {
                    out.events.push(TcpEvent::Eof { conn: self.id });
                    self.send_ack(out);
                    self.enter_time_wait(now, cfg, out);
                    return false;
                }
                _ => {}
            }
        }
        need_ack
    }

    fn on_ack(&mut self, now: SimTime, ack: u32, cfg: &TcpConfig) {
        let mut sample = None;
        while let Some(front) = self.in_flight.front_mut() {
            if seq::le(front.end(), ack) {
                if !front.retransmitted {
                    sample = Some(now.saturating_since(front.sent_at));
                }
                self.in_flight.pop_front();
            } else {
                if seq::lt(front.seq, ack) {
                    let skip = (ack.wrapping_sub(front.seq) as usize).min(front.data.len());
                    front.data = front.data.slice(skip..);
                    front.seq = ack;
                }
                break;
            }
        }
        self.snd_una = ack;
        self.retries = 0;
        if let Some(r) = sample {
            self.sample_rtt(r);
        }
        self.rto = self.computed_rto(cfg);
        self.rtx_at = if self.in_flight.is_empty() {
            None
        } else {
            Some(now + self.rto)
        };
    }

    fn establish(&mut self, now: SimTime, out: &mut Output) {
        if self.retries == 0 {
            self.sample_rtt(now.saturating_since(self.syn_sent_at));
        }
        self.state = TcpState::Established;
        self.retries = 0;
        self.rtx_at = None;
        self.announced = true;
        let (conn, local, remote) = (self.id, self.local, self.remote);
        out.events.push(match self.origin {
            Origin::Active => TcpEvent::Connected {
                conn,
                local,
                remote,
            },
            Origin::Passive => TcpEvent::Accepted {
                conn,
                local,
                remote,
            },
        });
        self.push_data(now, out);
    }

    /// Sends queued data within the window, then the FIN if the application closed.
    fn push_data(&mut self, now: SimTime, out: &mut Output) {
        if !matches!(self.state, TcpState::Established | TcpState::CloseWait) {
            return;
        }
        let window = self.snd_wnd.min(u32::from(self.window));
        while let Some(front) = self.unsent.front_mut() {
            let in_flight = self.snd_nxt.wrapping_sub(self.snd_una);
            if in_flight >= window {
                break;
            }
            let room = (window - in_flight).min(u32::from(self.mss)) as usize;
            let chunk = if front.len() <= room {
                let chunk = front.clone();
                self.unsent.pop_front();
                chunk
            } else {
                front.split_to(room)
            };
            let seq = self.snd_nxt;
            out.packets
                .push(self.packet(TcpFlags::ACK, seq, chunk.clone()));
            self.snd_nxt = seq.wrapping_add(len32(&chunk));
            self.in_flight.push_back(Sent {
                seq,
                data: chunk,
                fin: false,
                sent_at: now,
                retransmitted: false,
            });
        }
        if self.close_requested && !self.fin_sent && self.unsent.is_empty() {
            let seq = self.snd_nxt;
            out.packets
                .push(self.packet(TcpFlags::ACK | TcpFlags::FIN, seq, Bytes::new()));
            self.snd_nxt = seq.wrapping_add(1);
            self.fin_sent = true;
            self.in_flight.push_back(Sent {
                seq,
                data: Bytes::new(),
                fin: true,
                sent_at: now,
                retransmitted: false,
            });
            self.state = match self.state {
                TcpState::CloseWait => TcpState::LastAck,
                _ => TcpState::FinWait1,
            };
        }
        if !self.in_flight.is_empty() && self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rto);
        }
    }

    fn enter_time_wait(&mut self, now: SimTime, cfg: &TcpConfig, out: &mut Output) {
        self.state = TcpState::TimeWait;
        self.rtx_at = None;
        self.in_flight.clear();
        self.linger_at = Some(now + cfg.time_wait);
        out.events.push(TcpEvent::Closed {
            conn: self.id,
            reason: CloseReason::Fin,
        });
    }

    /// Ends the connection and reports it, if the application knows of it.
    fn finish(&mut self, reason: CloseReason, out: &mut Output) {
        if self.announced || self.origin == Origin::Active {
            out.events.push(TcpEvent::Closed {
                conn: self.id,
                reason,
            });
        }
        self.discard();
    }

    /// Ends the connection without a report.
    fn discard(&mut self) {
        self.state = TcpState::Closed;
        self.rtx_at = None;
        self.linger_at = None;
        self.unsent.clear();
        self.in_flight.clear();
    }

    fn acceptable(&self, seg: &TcpSegment) -> bool {
        let window = u32::from(self.window);
        match seg.seq_len() {
            0 => seq::in_window(seg.seq, self.rcv_nxt, window),
            len => {
                seq::in_window(seg.seq, self.rcv_nxt, window)
                    || seq::in_window(seg.seq.wrapping_add(len - 1), self.rcv_nxt, window)
            }
        }
    }

    fn back_off(&mut self, cfg: &TcpConfig) {
        self.retries += 1;
        self.rto = self.rto.saturating_mul(2).min(cfg.max_rto);
    }

    fn sample_rtt(&mut self, r: Duration) {
        self.rtt = Some(match self.rtt {
            None => (r, r / 2),
            Some((srtt, rttvar)) => {
                let delta = srtt.abs_diff(r);
                (srtt * 7 / 8 + r / 8, rttvar * 3 / 4 + delta / 4)
            }
        });
    }

    fn computed_rto(&self, cfg: &TcpConfig) -> Duration {
        match self.rtt {
            None => cfg.initial_rto,
            Some((srtt, rttvar)) => {
                (srtt + rttvar * 4).clamp(cfg.min_rto, cfg.max_rto.max(cfg.min_rto))
            }
        }
    }

    fn send_ack(&self, out: &mut Output) {
        out.packets
            .push(self.packet(TcpFlags::ACK, self.snd_nxt, Bytes::new()));
    }

    fn send_control(&self, flags: TcpFlags, seq: u32, out: &mut Output) {
        out.packets.push(self.packet(flags, seq, Bytes::new()));
    }

    fn packet(&self, flags: TcpFlags, seq: u32, payload: Bytes) -> Packet {
        let ack = if flags.ack() { self.rcv_nxt } else { 0 };
        let segment = TcpSegment {
            flags,
            seq,
            ack,
            window: self.window,
            payload,
        };
        Packet::tcp(self.local, self.remote, segment)
    }
}

fn len32(b: &Bytes) -> u32 {
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}
