"""What the emulated tenant holds: companies, users and maps, plus the seeded defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._data import SOURCES, DataSource


@dataclass(frozen=True)
class Company:
    """A SmartConnect company (tenant), named by its Customer Id."""

    company_id: str
    name: str


@dataclass(frozen=True)
class User:
    """A user: e-mail, plain password and the companies it may obtain tokens for."""

    email: str
    password: str = field(repr=False)
    company_ids: tuple[str, ...]


@dataclass(frozen=True)
class DemoCredential:
    """One ready-made login: ``email`` + ``password`` obtain a token for ``company_id``."""

    email: str
    password: str
    company_id: str


@dataclass(frozen=True)
class Column:
    """A map column as GetMapColumns / GetMappedMapColumns report it."""

    name: str
    required: bool = False


@dataclass(frozen=True)
class MapDef:
    """A map (process): identity, data source and the columns it requires.

    ``required`` source columns must be present and non-blank in every document a run
    receives, or that document fails. Real-time maps never appear in GetMapList.
    """

    key: str
    company_id: str
    map_id: str
    description: str
    source: DataSource
    mapped: tuple[Column, ...]
    required: tuple[str, ...] = ()
    realtime: bool = False

    @property
    def columns(self) -> tuple[Column, ...]:
        """Source columns (GetMapColumns)."""
        required = {name.lower() for name in self.required}
        return tuple(Column(name, name.lower() in required) for name in self.source.columns)


COMPANIES = (
    Company("DEMO01", "Northwind Traders (demo)"),
    Company("DEMO02", "Fabrikam Ltd (demo)"),
    Company("DEMO03", "Contoso Retail (demo)"),
)

# The passwords carry characters a client must percent-encode: '+', '/', '=', '&', '#', '%'.
USERS = (
    User("alice@northwind.example", "Alice+Secret/2024=", ("DEMO01", "DEMO02")),
    User("bob@fabrikam.example", "Bob&Builder#42", ("DEMO02",)),
    User("carol@contoso.example", "Carol%20Pass!", ("DEMO03",)),
)

DEMO_CREDENTIALS: tuple[DemoCredential, ...] = tuple(
    DemoCredential(user.email, user.password, company_id)
    for user in USERS
    for company_id in user.company_ids
)
"""Ready-made logins; ``alice`` has two companies, so two entries."""

IMPORT_CUSTOMERS_KEY = "c365b728-60e0-4841-841c-ab73008dd41d"
IMPORT_SALES_ORDERS_KEY = "1b763e98-37c4-4d32-8320-abb200d82e59"
POST_CASH_RECEIPTS_KEY = "7d2f9a61-3c4e-4b0a-9e15-ab9100c7e3a4"
REALTIME_CUSTOMERS_KEY = "e0a4c3b2-91d7-4f68-b5a0-abb400f1c2d9"
DUPLICATE_CUSTOMERS_KEY = "3f6b2e10-5d8c-4a71-8c9e-abc300e4f5a6"

_CUSTOMER_COLUMNS = (Column("AccountNumber", True), Column("AccountName"), Column("Phone"))


def _map(
    key: str,
    company_id: str,
    map_id: str,
    description: str,
    source: str,
    mapped: tuple[Column, ...],
    *,
    realtime: bool = False,
) -> MapDef:
    return MapDef(
        key=key,
        company_id=company_id,
        map_id=map_id,
        description=description,
        source=SOURCES[source],
        mapped=mapped,
        required=tuple(c.name for c in mapped if c.required),
        realtime=realtime,
    )


def seeded_maps(*, ambiguous: bool = False) -> list[MapDef]:
    """The default maps, in GetMapList order; ``ambiguous`` adds a second "Import Customers"."""
    maps = [
        _map(
            IMPORT_CUSTOMERS_KEY,
            "DEMO01",
            "Import Customers",
            "Customers to BC",
            "Customers",
            _CUSTOMER_COLUMNS,
        ),
        _map(
            IMPORT_SALES_ORDERS_KEY,
            "DEMO01",
            "Import Sales Orders",
            "Sales Orders to BC",
            "Sales Orders",
            (
                Column("SopNumber", True),
                Column("CustomerNumber", True),
                Column("DocumentDate"),
                Column("ItemNumber"),
                Column("Quantity"),
                Column("UnitPrice"),
            ),
        ),
        _map(
            "5a1e7c33-8b2d-4f0e-9a64-abb2010b7c15",
            "DEMO01",
            "Import GL Journal",
            "General journal to BC",
            "GL Journal",
            (
                Column("JournalEntry", True),
                Column("AccountNumber", True),
                Column("TransactionDate"),
                Column("Debit"),
                Column("Credit"),
                Column("Description"),
            ),
        ),
        _map(
            "9c0d4e21-7f3a-4b86-8d12-abb300a1b2c3",
            "DEMO01",
            "Import Vendors",
            "Vendors to BC",
            "Vendors",
            (Column("VendorId", True), Column("VendorName"), Column("PaymentTerms")),
        ),
        _map(
            "2b8f6a94-1e5c-4d37-a0f8-abb400b2c3d4",
            "DEMO01",
            "Import Items",
            "Items to BC",
            "Items",
            (Column("ItemNumber", True), Column("Description"), Column("ListPrice")),
        ),
        _map(
            POST_CASH_RECEIPTS_KEY,
            "DEMO01",
            "Post Cash Receipts",
            "Cash receipts to BC",
            "Cash Receipts",
            (
                Column("ReceiptNumber", True),
                Column("CustomerNumber", True),
                Column("CheckbookId", True),
                Column("Amount"),
            ),
        ),
        _map(
            REALTIME_CUSTOMERS_KEY,
            "DEMO01",
            "Realtime Customer Sync",
            "Customer changes to BC (real-time)",
            "Customers",
            _CUSTOMER_COLUMNS,
            realtime=True,
        ),
        _map(
            "4e7a9b02-6c1d-4f3e-b8a5-abb500c3d4e5",
            "DEMO02",
            "Import Customers",
            "Customers to GP",
            "Customers",
            _CUSTOMER_COLUMNS,
        ),
        _map(
            "8d3c1f57-2a9e-4b60-9f47-abb600d4e5f6",
            "DEMO02",
            "Export Items",
            "Items to the web shop",
            "Items",
            (Column("ItemNumber", True), Column("Description"), Column("QtyOnHand")),
        ),
        _map(
            "6f2a8c19-4d7b-4e05-a3c6-abb700e5f607",
            "DEMO03",
            "Import GL Journal",
            "General journal to GP",
            "GL Journal",
            (Column("JournalEntry", True), Column("AccountNumber", True), Column("Debit")),
        ),
    ]
    if ambiguous:
        maps.append(
            _map(
                DUPLICATE_CUSTOMERS_KEY,
                "DEMO01",
                "Import Customers",
                "Customers to BC (copy)",
                "Customers",
                _CUSTOMER_COLUMNS,
            )
        )
    return maps
