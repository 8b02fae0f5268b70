"""Defences against abuse from the network (issue 7), wired in by app.py:
- peer.py: the client address of the connection a task serves (a ContextVar) and the key
  limits and bans count it under;
- limits.py: connections in total and per address, and why a client is refused (each
  protocol renders its own refusal line; nothing here imports a protocol package);
- bans.py: failed-login counting and bans, applied inside AccountService.authenticate so
  every protocol's login is covered without protocol code knowing;
- stalls.py: cutting off clients that stop reading our output.
The header-size limit is an inbound check: checks/headers.py.
"""
