"""The Kafka stages of the stream pipeline (clean, delay, aggregate), their shared outputs and the worker
that runs them. Stages use ``streams/io/`` for Kafka and Redis and ``streams/logic/`` for what they compute;
nothing below imports them back (``tests/test_layout.py``)."""
