"""Exactly-once delivery through an action-scoped custom dimension named `matokit_key`.

Every hit to a site that has the dimension carries its journal idempotency key in it
(`dimension{ID}=KEY`), so after an uncertain send MatoKit can ask Matomo which hits it stored
and re-send only the others. `dimension` finds the dimension (view access), `setup` creates or
activates it (admin access). Nothing heavy is imported here.
"""
