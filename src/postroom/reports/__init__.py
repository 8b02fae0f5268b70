"""Reports postroom sends and receives (issue 20): DMARC aggregate reports (RFC 7489 §7)
and TLS-RPT (RFC 8460)."""
