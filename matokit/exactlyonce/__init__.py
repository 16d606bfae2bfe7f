"""Exactly-once delivery through an action-scoped custom dimension `matokit_key` (ADR-0008)."""
