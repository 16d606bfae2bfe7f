"""The shared backend on Redis (or Valkey): the profile's journal, report cache, rejected-token
memory, flush coordination and Matomo's pause, for containers and fleets (ADR-0009).

`connection` (the target from the settings, one client per process, every Redis failure as a
`StorageError` naming the problem and the fix), `keys` (every key name of a profile under one
hash tag, so the same code works on Redis Cluster).
"""
