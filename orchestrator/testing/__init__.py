"""Testing a conversation before it ships: scenario files and a pytest API."""
