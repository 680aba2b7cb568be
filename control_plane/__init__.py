"""The control plane: per-batch stage stats and dead letters folded into feed health, on Faust.

Pure parts (``figures``, ``health/``) are tested without a broker; ``emitter`` is the small producer the
stages and adapters use; ``app`` is the Faust application (agents, windowed tables, web views).
"""
