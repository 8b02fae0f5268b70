"""JMAP (RFC 8620 Core, RFC 8621 Mail, RFC 8887 WebSocket): the protocol floor's JSON API."""
