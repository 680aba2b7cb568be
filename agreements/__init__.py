"""The open-data platform's own duties: data-use agreements behind keys, daily quotas, IP allow-lists,
usage per key and feed, and feedback on feeds. The cores (``model``, ``access``, ``usage``, ``feedback``)
do no I/O; ``store`` keeps them in Redis and ``action_log`` writes operator actions to Kafka."""
