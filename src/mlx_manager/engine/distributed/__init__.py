"""A model sharded over several processes or machines with mx.distributed (engine/distributed/worker.py)."""
