"""Mail on its way out: the durable queue, its delivery worker and the SMTP client it
dials with. A service below the protocols: smtp/ hands it messages (through the
`QueueWorker` hook app.py wires), and nothing here imports a protocol package.

Modules: model.py (outcomes, grouping, admin view; pure), schedule.py (back-off; pure),
routing.py (MX / implicit MX / null MX / relay host), signing.py (DKIM on the way out),
worker.py (QueueWorker: the SMTP server's outbound hook and the delivery loop),
admin.py (the `postroom queue` verbs), client.py (the outbound SMTP client, PIPELINING,
opportunistic TLS), replyparse.py (sans-IO SMTP reply parser).
"""
