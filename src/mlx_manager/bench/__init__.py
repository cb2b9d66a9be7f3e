"""A serving benchmark for any OpenAI-compatible server: concurrency sweep, TTFT/ITL/latency percentiles."""
