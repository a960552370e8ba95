"""Feedback metrics service: joins model responses with ground truth and scores the model.

`join` pairs response and feedback events by inference id (either may come first),
`scoring` turns joined instances into classification or regression metrics (cumulative and
over a recent window), `detector` wires both into the detector frame and Prometheus, and
`service.create_app()` is what `vigil serve metrics` runs.
"""
