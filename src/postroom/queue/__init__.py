"""The outbound queue: durable per-recipient rows, the delivery worker, MX routing,
back-off and bounces.

Modules: model.py (outcomes, grouping, admin view; pure), schedule.py (back-off; pure),
routing.py (MX / implicit MX / null MX / relay host), signing.py (DKIM on the way out),
worker.py (QueueWorker: the SMTP server's outbound hook and the delivery loop),
admin.py (the `postroom queue` verbs).
"""
