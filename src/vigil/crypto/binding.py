"""What a ciphertext is bound to: tenant, environment, record type, record id and field.

The binding is fed to AES-GCM as associated data (envelope) or into the per-object key derivation
(streaming). Threat: someone with write access to the database or the object store copies a valid
ciphertext from one place to another (another row, another column, another dealer, sandbox to
production) hoping the application decrypts it there. With the binding in the AAD that copy fails
authentication instead (S8: "ciphertexts are bound to tenant and record").

Encoding: the five fields joined by NUL and UTF-8 encoded. Fields must be non-empty and may not
contain NUL, which makes the encoding injective (two different bindings never give the same bytes)
while costing one `join` per record: the 1 KiB record path is measured against raw AES-GCM, so a
binding is a tuple (immutable, built by one C call) rather than a class with attribute writes.
"""

from __future__ import annotations

from vigil.crypto.errors import InvalidBinding

_SEPARATORS = 4
_new_tuple = tuple.__new__


class Binding(tuple[bytes, str, str, str, str, str]):
    """An immutable AAD binding; `aad` is computed once, at construction."""

    __slots__ = ()

    def __new__(
        cls, tenant: str, environment: str, record_type: str, record_id: str, field: str
    ) -> Binding:
        joined = "\0".join((tenant, environment, record_type, record_id, field))
        if joined.count("\0") != _SEPARATORS or not (
            tenant and environment and record_type and record_id and field
        ):
            raise InvalidBinding("binding fields must be non-empty and free of NUL bytes")
        return tuple.__new__(
            cls, (joined.encode("utf-8"), tenant, environment, record_type, record_id, field)
        )

    @property
    def aad(self) -> bytes:
        return self[0]

    @property
    def tenant(self) -> str:
        """The dealer id: whose data keys seal this value."""
        return self[1]

    @property
    def environment(self) -> str:
        return self[2]

    @property
    def record_type(self) -> str:
        return self[3]

    @property
    def record_id(self) -> str:
        return self[4]

    @property
    def field(self) -> str:
        return self[5]

    def with_field(self, field: str) -> Binding:
        """The same record, another column: each field of a row gets its own binding."""
        return Binding(self[1], self[2], self[3], self[4], field)

    def __repr__(self) -> str:
        return (
            f"Binding(tenant={self[1]!r}, environment={self[2]!r}, record_type={self[3]!r}, "
            f"record_id={self[4]!r}, field={self[5]!r})"
        )


class BindingScope:
    """Bindings for many records of one (tenant, environment, record type): what a repository
    holds for a request. The shared prefix is validated and encoded once; `bind` checks only the
    record id and field, which keeps per-record AAD building off the 1 KiB hot path."""

    __slots__ = ("_prefix", "_text", "environment", "record_type", "tenant")

    def __init__(self, tenant: str, environment: str, record_type: str) -> None:
        probe = Binding(tenant, environment, record_type, "-", "-")  # the same validation
        self.tenant, self.environment, self.record_type = tenant, environment, record_type
        self._text = (tenant, environment, record_type)
        self._prefix = probe.aad[:-3]  # drop "-\0-": keeps "tenant\0environment\0record_type\0"

    def bind(self, record_id: str, field: str) -> Binding:
        if not record_id or not field or "\0" in record_id or "\0" in field:
            raise InvalidBinding("binding fields must be non-empty and free of NUL bytes")
        tenant, environment, record_type = self._text
        aad = self._prefix + f"{record_id}\0{field}".encode()
        return _new_tuple(Binding, (aad, tenant, environment, record_type, record_id, field))

    def __repr__(self) -> str:
        return f"BindingScope({self.tenant!r}, {self.environment!r}, {self.record_type!r})"
