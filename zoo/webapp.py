"""``zoo serve``'s HTTP layer: a FastAPI app over a :class:`zoo.serve.Service`, run by uvicorn.

* ``POST /api/v1/search``, ``GET /api/v1/models``, ``GET /api/v1/health``, ``GET /api/v1/molecules/{cid}``,
  ``GET /api/v1/depict?smiles=`` (an RDKit SVG); OpenAPI docs at ``/docs`` (schema ``/openapi.json``).
* :func:`serve_runs` is ``zoo serve``: one long-lived OPSIN, the runs loaded and checked, then uvicorn.
* Every error is JSON ``{"error": "one line", "status": N}`` with its status (422 bad input, 413 too long,
  404 unknown model, molecule or path, 500 a bug: logged on the server, never a traceback in the answer).
* The web page (``/`` and ``/static/{app.js,style.css}``) is read from the package once, at start, into
  memory: no request maps to a file path. Sync endpoints run on uvicorn's thread pool.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from zoo import __version__
from zoo.errors import OpsinError, RunError, ServeError, ZooError
from zoo.opsin import LongLivedOpsin, long_lived_opsin
from zoo.serve import MAX_K, MAX_QUERY_CHARS, NAME_TIMEOUT_S, Service, depict, one_line

API = "/api/v1"
#: the largest request body accepted (bytes); a longer one is refused with 413 before it is parsed
MAX_BODY_BYTES = 4 * MAX_QUERY_CHARS + 4096
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
log = logging.getLogger("zoo.serve")


class SearchRequest(BaseModel):
    """A search: ``query`` (a description: molecules come back) or ``smiles`` (a molecule: descriptions)."""

    model_config = ConfigDict(extra="forbid")
    query: str | None = Field(None, description=f"a description (at most {MAX_QUERY_CHARS:,} characters)",
                              examples=["The molecule is a monocarboxylic acid anion that is the conjugate base of acetic acid."])
    smiles: str | None = Field(None, description="a molecule as SMILES", examples=["CCO"])
    k: int = Field(10, description=f"how many results (1..{MAX_K})")
    model: str | None = Field(None, description="a served model's name (GET /api/v1/models); default: the first served")
    names: bool | None = Field(None, description="also return the query's spans parsed as chemical names "
                                                 "(default: when the model itself uses chemical names)")
    depict: bool = Field(False, description="add an RDKit SVG drawing to each molecule hit")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    """The first validation error on one line: where, then what (``body.k: Input should be a valid integer``)."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request body"
    if first.get("type") == "json_invalid":
        return "request body: not valid JSON"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{where}: {first.get('msg', 'invalid')}{more}")


def _page(name: str) -> str:
    return resources.files("zoo").joinpath("web", name).read_text(encoding="utf-8")


def create_app(service: Service) -> FastAPI:
    """The app over ``service`` (loaded already: nothing is loaded per request)."""
    app = FastAPI(title="molzoo search", version=__version__,
                  description="Text ↔ molecule retrieval with trained molzoo models. Errors are JSON "
                              "`{\"error\": \"one line\", \"status\": N}`.")
    index_html, static = _page("index.html"), {name: _page(name) for name in STATIC}

    @app.middleware("http")
    async def bounded_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, f"request body over the limit of {MAX_BODY_BYTES:,} bytes")
        return await call_next(request)

    @app.exception_handler(ServeError)
    async def serve_error(_request: Request, exc: ServeError) -> JSONResponse:
        return _error(exc.status, one_line(exc))

    @app.exception_handler(ZooError)
    async def zoo_error(_request: Request, exc: ZooError) -> JSONResponse:
        return _error(422, one_line(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no such path: {request.url.path}" if exc.status_code == 404 else one_line(exc.detail)
        return _error(exc.status_code, message)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index_html)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in static:  # only the page's own files, held in memory
            return _error(404, f"no such file: {name[:80]}")
        return Response(static[name], media_type=STATIC[name])

    @app.post(f"{API}/search", summary="Search: a description's molecules or a molecule's descriptions")
    def search(request: SearchRequest) -> dict[str, Any]:
        return service.search(query=request.query, smiles=request.smiles, k=request.k, model=request.model,
                              names=request.names, depict_hits=request.depict)

    @app.get(f"{API}/models", summary="The served models: composition, spec hash, test metrics")
    def models() -> dict[str, Any]:
        return {"default": service.default, "models": [m.info() for m in service.models.values()]}

    @app.get(f"{API}/health", summary="Liveness, version, limits")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get(f"{API}/molecules/{{cid}}", summary="A gallery molecule with its nearest molecules and descriptions")
    def molecule(cid: str, model: str | None = None, k: int = Query(10)) -> dict[str, Any]:
        return service.molecule(cid, model=model, k=k)

    @app.get(f"{API}/depict", summary="An RDKit SVG drawing of a SMILES", response_class=Response)
    def depiction(smiles: str = Query(..., description="a molecule as SMILES")) -> Response:
        return Response(depict(smiles), media_type="image/svg+xml")

    return app


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight, then returns)."""
    import uvicorn

    if host not in LOCAL_HOSTS:
        print(f"zoo: warning: --host {host} exposes the server beyond this machine (no authentication); "
              "the default 127.0.0.1 keeps it local", file=sys.stderr, flush=True)
    config = uvicorn.Config(create_app(service), host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=10)
    stopped_by: list[int] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:
            stopped_by.append(sig)
            super().handle_exit(sig, frame)

    server = Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        pass
    if signal.SIGINT in stopped_by:
        # uvicorn re-raises a caught Ctrl-C after its graceful shutdown, but into asyncio's own SIGINT
        # handler, which only cancels the (by then finished) main task: now and again nothing was raised
        # and `zoo serve` exited 0 instead of 130
        raise KeyboardInterrupt
    if not server.started:

        raise RunError(f"could not listen on {host}:{port} (in use, or not an address of this machine); "
                       "choose another with --host/--port")


def serve_runs(run_dirs: Sequence[str | Path], *, index: str | None = None, host: str = "127.0.0.1", port: int = 8000,
               data_dir: str | None = None, device: str = "cpu", name_timeout: float = NAME_TIMEOUT_S,
               log: Callable[[str], None] = print) -> None:
    """``zoo serve``: start one long-lived OPSIN (when Java is there), load and check every run, then serve."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        try:
            stack.enter_context(long_lived_opsin(LongLivedOpsin(name_timeout)))
            names_available = True
        except OpsinError as exc:
            log(f"zoo: warning: {one_line(exc)}; queries are answered without chemical-name evidence")
            names_available = False
        service = Service.load(run_dirs, index=index, data_dir=data_dir, device=device, names_available=names_available, log=log)
        where = f"[{host}]" if ":" in host else host
        log(f"serve: http://{where}:{port}/ (the page; API under /api/v1, its docs at /docs); Ctrl-C stops it")
        serve(service, host, port)
