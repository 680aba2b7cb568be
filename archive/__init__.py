"""History beyond Kafka retention: tier topics written to daily-partitioned Parquet files
(``feed=<feed>/tier=<tier>/date=<YYYY-MM-DD>/``), each file stating the Kafka offsets it holds. See
docs/replay.md."""
