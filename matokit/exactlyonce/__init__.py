"""Exactly-once delivery through an action-scoped custom dimension `matokit_key` (ADR-0008).

Every hit to a site that has the dimension carries its journal idempotency key in it
(`dimension{ID}=KEY`), so after an uncertain send MatoKit asks Matomo which hits it stored and
re-sends only the others. `dimension` finds the dimension (view access), `setup` creates or
activates it (admin access), `sites` applies the `exactly_once` setting, `lookup` and
`reconcile` ask Matomo. Nothing heavy is imported here.
"""
