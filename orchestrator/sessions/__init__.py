"""The session: its model, the store interface and the live event hub."""
