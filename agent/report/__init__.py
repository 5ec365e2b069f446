"""What the agent tells people and machines. In: tick results and counters. Out: Prometheus
metrics, the status file, the tick's log line, sd_notify, and the CLI's tables and JSON.
"""

__all__: list[str] = []
