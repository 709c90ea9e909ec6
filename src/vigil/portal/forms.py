"""Reading portal forms: url-encoded only, bounded, one value per name.

Parsed by hand (as the OAuth endpoint does) rather than with a multipart library: the portal
never uploads files (a CA bundle is pasted, or read into the form by the script), and refusing
everything else keeps a request's cost bounded.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from vigil.core.errors import InvalidInput

MAX_BODY = 16 * 1024
MAX_FIELDS = 40


async def read_form(request: Request, max_body: int = MAX_BODY) -> dict[str, list[str]]:
    """`max_body` is raised only by the one form that carries a CA bundle (PEM, 64 KiB at most
    before URL-encoding)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("Send the form as application/x-www-form-urlencoded.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        raise InvalidInput("The form is too large.")
    body = await request.body()
    if len(body) > max_body:
        raise InvalidInput("The form is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("The form could not be read.") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def one(form: dict[str, list[str]], name: str, max_length: int = 200) -> str:
    values = form.get(name, [])
    if len(values) > 1:
        raise InvalidInput(f"'{name}' was sent more than once.")
    value = values[0].strip() if values else ""
    if len(value) > max_length:
        raise InvalidInput(f"'{name}' is longer than {max_length} characters.")
    return value
