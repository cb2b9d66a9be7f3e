"""What the server tells an operator: Prometheus metrics and structured logs."""
