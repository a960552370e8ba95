"""A do-nothing detector: uvicorn's own cost per event, the floor under bench_peers' 1-row rows.

Served through `vigil.services.serve` (uvicorn exactly as every component runs), it reads each
request's body and answers as a detector answers, without doing any of its work: ``--mode drift``
a 202 with no body, ``--mode outlier`` a 200 carrying a one-row outlier reply (its ``ce-``
headers and body written once by `vigil_detectors.frame.wire.reply`). What a detector's event
costs above this app's is the frame's and the detector's own work.

    python bench/floor_app.py --mode outlier --port 8700
"""

from __future__ import annotations

import argparse


def outlier_reply() -> tuple[dict[str, str], bytes]:
    """The headers and body of a one-row outlier reply, written by the frame's own `wire.reply`
    (bench_jetstream's nats-py floor publishes it too)."""
    from vigil import components
    from vigil_detectors.frame.wire import reply

    return reply({"type": components.get("outlier").reply_type, "source": "/vigil/bench/outlier", "id": "bench-0",
                  "datacontenttype": "application/json", "inferenceid": "inf-0"},
                 {"data": {"instance_score": [0.123456789], "is_outlier": [0], "feature_score": None,
                           "threshold": 1.23456789},
                  "meta": {"name": "OutlierVAE", "detector_type": "outlier", "data_type": None, "version": "0.12.0"}})


def make_app(mode: str):
    if mode == "drift":
        start = {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
        body = b""
    else:
        headers, body = outlier_reply()
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        start = {"type": "http.response.start", "status": 200,
                 "headers": [*raw, (b"content-length", str(len(body)).encode())]}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("drift", "outlier"), required=True, help="answer as this detector answers")
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    args = ap.parse_args()
    from vigil.services import serve

    serve(make_app(args.mode), "127.0.0.1", args.port, "warning")


if __name__ == "__main__":
    main()
