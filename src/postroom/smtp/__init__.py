"""SMTP: sans-IO wire core, replies, policy, the asyncio session and receiving."""
