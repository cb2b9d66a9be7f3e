"""The manager's HTTP API under /api: thin routes and schemas over mlx_manager.manager."""
