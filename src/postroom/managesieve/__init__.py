"""ManageSieve (RFC 5804): `wire.py` (sans-IO syntax), `commands.py` (meaning),
`session.py` (the asyncio driver). Scripts themselves: accounts/sievescripts.py."""
