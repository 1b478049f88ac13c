"""The alerting stage's pure core: rule ``creator.outperforming``, its state machine and
its notification policy. No Kafka, Faust, HTTP or ClickHouse here; the stream wires it.

For one campaign, at each minute of its event-time clock:

1. ``evaluate``: the creators' trailing-window totals become per-creator verdicts. Each rate
   (engagement rate, CTR, conversion rate) is shrunk toward the creator's cohort (campaign x
   tier) and scored with a modified z-score; so are views velocity and, where a fee is known,
   cost per acquisition. A creator fires when a metric is extreme (z), clearly better (lift)
   and, for rates, probably better (the Beta posterior); small samples never fire.
2. ``machine``: per (rule, campaign, creator), Prometheus' pending -> firing -> resolved with
   hysteresis, so an episode fires once and late data never re-fires it. Its state is bytes,
   for a changelog.
3. ``policy``: Alertmanager's grouping, reminders, resolutions, silences and the replay
   horizon turn alerts into notifications with stable ids, on the injected wall clock.

``rules`` holds every number above, loaded from a validated TOML file
(``default_rules.toml`` ships the documented defaults); ``stats`` the statistics.
"""
