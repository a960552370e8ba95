"""Vigil's request logger: a reverse proxy in front of any V2/V1 model server that gives
every inference an id and emits it as CloudEvents to the detectors.

`settings` reads ``VIGIL_LOGGER_*``, `sinks` delivers events from a bounded queue per
sink with retries (never blocking a reply, counting every drop), `app.create_app` is
the FastAPI proxy. Nothing here imports TensorFlow or decodes inference bodies.
"""
