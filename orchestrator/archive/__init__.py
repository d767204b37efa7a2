"""The durable archive: each ended session's final record and transcript in SQL."""
