"""Which route a request reaches, and what that route declared it requires (S12).

The HTTPS edge enforces a route's declaration before calling it, so it must find the very route
Starlette's router will run: the first route, in order, that fully matches (path and method).
`RouteTable` answers that with the routes' own `matches`, and for the common case of a path
without parameters it first narrows the search to the routes whose pattern matches that exact
path, worked out once: the same answer as a full scan, for a dictionary look-up. When every
route of that narrowed list matches the way Starlette's and FastAPI's own `Route`/`APIRoute`
do (no subclass with its own `matches`), the answer for a (path, method) is worked out once too.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route

from vigil.edge.asgi import Scope
from vigil.edge.authorization import PublicRoute, RequiredScope, Requirement


def requirement(route: BaseRoute) -> Requirement | None:
    """The route's declaration: its `requires(...)` or `public(...)` dependency, if any.

    Read from the route's resolved dependency tree (its own dependencies and theirs), which is
    what FastAPI runs, so a declaration cannot sit somewhere it is not enforced."""
    if not isinstance(route, APIRoute):
        return None
    for dep in route.dependant.dependencies:
        for call in (dep.call, *(d.call for d in dep.dependencies)):
            if isinstance(call, RequiredScope | PublicRoute):
                return call
    return None


def query_names(route: BaseRoute) -> frozenset[str] | None:
    """The query parameters the route reads (None: not an API route, nothing to check).

    Unknown parameters are refused (422) rather than ignored: a misspelt filter silently
    ignored returns more than the caller asked for, which is how data leaks into the wrong
    screen (strict input validation, issue 4). Routes outside the API document (the OAuth
    protocol endpoints, pages) parse their own parameters and are left to do so."""
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return None
    return frozenset(_query_aliases(route.dependant))


def _query_aliases(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_aliases(sub)
    return names


class RouteTable:
    """Resolve a request to (route, child scope) like Starlette's router, or None.

    None means no route fully matches: the router then answers 404 or 405 itself. The table is
    rebuilt whenever the number of routes changes, so routes added after start-up are seen.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._size = -1
        self._exact: dict[str, tuple[Route, ...]] = {}
        self._requirements: dict[int, tuple[BaseRoute, Requirement | None]] = {}
        self._queries: dict[int, frozenset[str] | None] = {}
        # (exact path, method) -> the route that fully matches, for paths whose candidates all
        # match in the standard way; None when no candidate does (the router answers 405).
        self._static: dict[tuple[str, str], Route | None] = {}
        self._plain_paths: set[str] = set()

    def _build(self) -> None:
        routes = list(self._routes)
        self._requirements = {id(r): (r, requirement(r)) for r in routes}
        self._queries = {id(r): query_names(r) for r in routes}
        self._exact = {}
        self._static = {}
        self._plain_paths = set()
        if all(isinstance(r, Route) for r in routes):
            plain = [r for r in routes if isinstance(r, Route) and not r.param_convertors]
            for candidate in plain:
                path = candidate.path_format
                self._exact[path] = tuple(
                    r for r in routes if isinstance(r, Route) and r.path_regex.match(path)
                )
                if all(_standard(r) for r in self._exact[path]):
                    self._plain_paths.add(path)
        self._size = len(routes)

    def resolve(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        if len(self._routes) != self._size:
            self._build()
        path = get_route_path(scope)
        if path in self._plain_paths and scope["type"] == "http":
            return self._resolve_static(path, scope)
        routes: Sequence[BaseRoute] | None = self._exact.get(path)
        if routes is None:
            routes = self._routes
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child
        return None

    def _resolve_static(self, path: str, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        key = (path, scope["method"])
        if key not in self._static:
            self._static[key] = next(
                (r for r in self._exact[path] if not r.methods or key[1] in r.methods), None
            )
        route = self._static[key]
        if route is None:
            return None
        # What `Route.matches` (and `APIRoute.matches`) return for a path without parameters.
        child: Scope = {
            "endpoint": route.endpoint,
            "path_params": dict(scope.get("path_params", {})),
        }
        if isinstance(route, APIRoute):
            child["route"] = route
        return route, child

    def requirement(self, route: BaseRoute) -> Requirement | None:
        known = self._requirements.get(id(route))
        if known is not None and known[0] is route:
            return known[1]
        return requirement(route)

    def query_refusal(self, route: BaseRoute, query_string: bytes) -> str | None:
        """Why `route` refuses this query string, or None: parameters it does not read
        (`query_names`), or one it reads given more than once. Every API query parameter is
        a single value; of `?site_id=a&site_id=b` the framework would silently use one, and a
        proxy or log in front might have read the other (parameter pollution)."""
        if not query_string:
            return None
        known = self._queries[id(route)] if id(route) in self._queries else query_names(route)
        if known is None:
            return None
        names = [k for k, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)]
        unknown = [n for n in dict.fromkeys(names) if n not in known]
        if unknown:
            return "Unknown query parameters: " + ", ".join(n[:40] for n in unknown[:5]) + "."
        if len(names) != len(set(names)):
            twice = [n for n in dict.fromkeys(names) if names.count(n) > 1]
            return "Query parameters given more than once: " + ", ".join(twice[:5]) + "."
        return None


def _standard(route: Route) -> bool:
    """A route that matches exactly as Starlette's `Route` or FastAPI's `APIRoute` does."""
    return type(route).matches in (Route.matches, APIRoute.matches) and not route.param_convertors
