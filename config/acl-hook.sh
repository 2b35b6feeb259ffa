#!/bin/sh
# A decision hook for `relay serve` (node.relay.service.acl.hook_command), used by
# relay.hardened.yaml. The relay runs it once per request and writes the request as one
# JSON line on stdin, e.g.
#   {"ticket":7,"kind":"reserve","peer":"12D3KooW...","ip":"192.0.2.1"}
# Exit status 0 allows the request; anything else refuses it.
#
# This one allows every request unless the requesting peer is listed, one PeerId per
# line, in the file named by RELAY_HOOK_DENY (default /etc/relay/deny-peers.txt), a
# list an operator can change without restarting the relay.

read -r request || exit 1
peer=$(printf '%s\n' "$request" | sed -n 's/.*"peer":"\([^"]*\)".*/\1/p')
[ -n "$peer" ] || exit 1
deny=${RELAY_HOOK_DENY:-/etc/relay/deny-peers.txt}
if [ -f "$deny" ] && grep -qxF "$peer" "$deny"; then
    exit 1
fi
exit 0
