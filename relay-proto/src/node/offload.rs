//! Crypto offload at the node level: which connections hand their ciphers to the
//! runtime, and the outputs that carry ciphers and plaintext (see
//! [`crate::conn::offload`] for the hand-over itself).

use super::{ConnectionId, Node, Output};

impl Node {
    /// Hands the Noise ciphers of every TCP connection from now on to the runtime, once
    /// the connection is open ([`Output::Offload`]); the runtime then decrypts what it
    /// reads ([`super::Input::Decrypted`]) and encrypts [`Output::TransmitPlain`]. A
    /// runtime that reads and writes each socket on tasks of its own so spreads the
    /// cipher work of many connections over all cores. Relayed connections keep their
    /// ciphers: their bytes travel inside another connection.
    pub fn enable_crypto_offload(&mut self) {
        self.shared.offload_crypto = true;
    }

    /// Queues a connection's ciphers and plaintext for the runtime, after its
    /// ciphertext ([`Node::pump`] pushes that first).
    pub(super) fn pump_offload(&mut self, id: ConnectionId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(ciphers) = c.conn.poll_offload() {
            self.shared.outputs.push_back(Output::Offload {
                conn: id,
                ciphers: Box::new(ciphers),
            });
        }
        if let Some(data) = c.conn.poll_transmit_plain() {
            self.shared
                .outputs
                .push_back(Output::TransmitPlain { conn: id, data });
        }
    }
}
