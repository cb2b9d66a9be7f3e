"""Sending requests to other backends: rule matching, circuit breakers, least-outstanding balancing.

Pure logic, no HTTP: the API layer asks which backends a model name maps to and in what order to try them.
"""
