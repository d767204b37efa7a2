"""Orchestration server companion for Soul Machines digital people."""
