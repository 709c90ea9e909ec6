"""What a ciphertext is bound to: tenant, environment, record type, record id and field.

The binding is fed to AES-GCM as associated data (envelope) or into the per-object key derivation
(streaming). Threat: someone with write access to the database or the object store copies a valid
ciphertext from one place to another (another row, another column, another dealer, sandbox to
production) hoping the application decrypts it there. With the binding in the AAD that copy fails
authentication instead (S8: "ciphertexts are bound to tenant and record").

Encoding: the five fields joined by NUL and UTF-8 encoded. Fields must be non-empty and may not
contain NUL, which makes the encoding injective (two different bindings never give the same bytes)
while costing one `join` per record: the 1 KiB record path is measured against raw AES-GCM.
"""

from __future__ import annotations

from vigil.crypto.errors import InvalidBinding

_FIELDS = 5


class Binding:
    """An immutable AAD binding; `aad` is computed once."""

    __slots__ = ("aad", "environment", "field", "record_id", "record_type", "tenant")

    tenant: str
    environment: str
    record_type: str
    record_id: str
    field: str
    aad: bytes

    def __init__(
        self, tenant: str, environment: str, record_type: str, record_id: str, field: str
    ) -> None:
        joined = "\0".join((tenant, environment, record_type, record_id, field))
        if joined.count("\0") != _FIELDS - 1 or not (
            tenant and environment and record_type and record_id and field
        ):
            raise InvalidBinding("binding fields must be non-empty and free of NUL bytes")
        set_ = object.__setattr__
        set_(self, "tenant", tenant)
        set_(self, "environment", environment)
        set_(self, "record_type", record_type)
        set_(self, "record_id", record_id)
        set_(self, "field", field)
        set_(self, "aad", joined.encode("utf-8"))

    def with_field(self, field: str) -> Binding:
        """The same record, another column: each field of a row gets its own binding."""
        return Binding(self.tenant, self.environment, self.record_type, self.record_id, field)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Binding is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Binding) and other.aad == self.aad

    def __hash__(self) -> int:
        return hash(self.aad)

    def __repr__(self) -> str:
        return (
            f"Binding(tenant={self.tenant!r}, environment={self.environment!r}, "
            f"record_type={self.record_type!r}, record_id={self.record_id!r}, "
            f"field={self.field!r})"
        )
