"""The stream stages' I/O: the batch stage base (poll, deliver, commit), the batch producer, the Redis state
store and the Prometheus metrics. Never imports ``streams/stages/`` (``tests/test_layout.py``)."""
