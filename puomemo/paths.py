"""REST routes that answer with and without a trailing slash, and the schema hook that lists one form of each."""

from collections.abc import Callable

from django.urls import URLPattern, path

# The name suffix of a route's other form: reverse() and the OpenAPI schema use the canonical one.
OTHER_FORM = "-other-slash"


def either_slash(route: str, view: Callable, *, name: str) -> list[URLPattern]:
    """The route as given (canonical, named `name`) and its other form, with or without the trailing slash."""
    other = route.removesuffix("/") if route.endswith("/") else f"{route}/"
    return [path(route, view, name=name), path(other, view, name=f"{name}{OTHER_FORM}")]


def other_forms() -> set[str]:
    """The non-canonical routes under /api/v4/, as drf-spectacular spells paths (`/api/v4/memories/{pk}`)."""
    from puomemo import urls

    return {_spectacular_path(pattern) for pattern in urls.api_v4 if pattern.name.endswith(OTHER_FORM)}


def _spectacular_path(pattern: URLPattern) -> str:
    route = str(pattern.pattern)
    for converter in ("int:", "uuid:", "str:", "slug:", "path:"):
        route = route.replace(f"<{converter}", "<")
    return "/api/v4/" + route.replace("<", "{").replace(">", "}")


def drop_other_forms(endpoints: list, **kwargs) -> list:
    """drf-spectacular preprocessing hook: one form of each path in the schema."""
    others = other_forms()
    return [endpoint for endpoint in endpoints if endpoint[0] not in others]
