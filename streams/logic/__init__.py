"""What the stream stages compute, with no I/O: cleaning, enrichment, per-tier fan-out, time windows,
envelopes and aggregation. Tested without a broker; imports no Kafka, Redis or network client and nothing
of ``streams/stages/`` or ``streams/io/`` (``tests/test_layout.py``)."""
