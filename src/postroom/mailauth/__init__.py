"""Sender authentication: SPF (spf.py), DKIM (dkim.py, keys.py), DMARC (dmarc.py) and the
Authentication-Results header (authresults.py). Every check takes a `Resolver`.

This package initialiser imports nothing, so importing the sans-IO `dmarc` module does not
pull in asyncio through the SPF or DKIM modules.
"""
