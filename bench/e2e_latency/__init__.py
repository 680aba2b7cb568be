"""End-to-end latency of an undelayed tier: source poll → client receipt, per position report.

The bench serves the bus source itself (the project's simulator app, with a middleware that notes when each
report was first served), runs the real adapter, stream worker and WebSocket server as separate processes
against it, and follows raw.bus, tier.operator.bus and an operator client. Run: ``python -m bench.e2e_latency``.
"""
