"""Alerts as the composition root runs them: their settings (``settings``), the alert
sink and its outbox of notifications and deliveries (``outbox``), and the ``alerts``
commands (``commands``). The pure rules, statistics and policy live in
``streams.alerts``; the hooks in ``sinks.webhooks``.
"""
