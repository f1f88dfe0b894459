"""`GET /metrics`: the Prometheus text format (core.metrics), computed at each scrape in the
read pool (a scrape lists metadata and packs: never on the event loop). Behind the bearer
token like everything else unless `serve --metrics-public` makes it one of the public paths."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from core.metrics import build_registry, render

METRICS_PATH = "/metrics"
metrics_router = APIRouter()


@metrics_router.get(METRICS_PATH, include_in_schema=False)
async def metrics(request: Request) -> Response:
    ctx = request.app.state.ctx
    registry = build_registry(
        ctx.mgr, operations=ctx.mgr.operations, requests=request.app.state.store_requests
    )
    body = await ctx.reads.run(render, registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
