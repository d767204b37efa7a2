"""Where sessions live: memory (embedded default) or Redis, and routing between instances."""
