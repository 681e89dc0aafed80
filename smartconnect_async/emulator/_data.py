"""Seeded data sources: lazily generated, deterministic rows for the emulator's maps.

Row ``i`` of a data source depends only on the seed and ``i`` (generation is sequential
with a fixed number of random draws per row), so a source of 1,000 rows is the prefix of
the same source with 1,000,000 rows. Rows are tuples aligned with their table's columns;
``None`` is a null value (the column is absent from the row on the wire).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

Row = tuple[str | None, ...]
RowFactory = Callable[[int, int], Iterator[Row]]
"""``(seed, size) -> rows`` of one table."""


@dataclass(frozen=True)
class Table:
    """One table of a data set: its row element name, its columns and its row factory."""

    name: str
    columns: tuple[str, ...]
    rows: RowFactory


@dataclass(frozen=True)
class DataSource:
    """A SmartConnect data source: the data set root element name and its tables.

    ``size`` (set per emulator) is the row count of the first table; the other tables
    of a multi-table source derive their rows from it (e.g. order lines per order).
    """

    name: str
    dataset: str
    tables: tuple[Table, ...]
    default_size: int

    @property
    def columns(self) -> tuple[str, ...]:
        """All source columns, first table first, without repeats."""
        seen: dict[str, None] = {}
        for table in self.tables:
            for column in table.columns:
                seen.setdefault(column, None)
        return tuple(seen)


def _rng(seed: int, *names: str) -> random.Random:
    return random.Random(":".join((str(seed), *names)))


_LATIN = (
    "Purus",
    "Ultrices",
    "Lorem",
    "Ipsum",
    "Dolor",
    "Amet",
    "Adipiscing",
    "Elit",
    "Aenean",
    "Commodo",
    "Ligula",
    "Eget",
    "Massa",
    "Natoque",
    "Magnis",
    "Montes",
    "Donec",
    "Quam",
    "Felis",
    "Pretium",
    "Nulla",
    "Enim",
    "Justo",
    "Aliquet",
    "Arcu",
    "Rhoncus",
    "Vitae",
    "Dictum",
    "Mollis",
    "Integer",
    "Cras",
    "Dapibus",
    "Vivamus",
    "Semper",
    "Tellus",
    "Aliquam",
    "Viverra",
    "Tempus",
    "Metus",
    "Varius",
    "Augue",
    "Nunc",
    "Mauris",
    "Odio",
    "Risus",
    "Orci",
    "Libero",
    "Sapien",
    "Lacus",
    "Erat",
    "Neque",
    "Velit",
    "Tortor",
    "Urna",
    "Nibh",
    "Lectus",
    "Morbi",
)
_SUFFIXES = (
    "Limited",
    "Inc.",
    "Corp.",
    "LLC",
    "Industries",
    "Associates",
    "Foundation",
    "Company",
    "Institute",
    "Consulting",
    "Corporation",
    "LLP",
)
_STREETS = ("St.", "Ave", "Rd.", "Street", "Avenue", "Road")
# (city, state, area code, ZIP prefix)
_CITIES = (
    ("Denver", "CO", "303", "80"),
    ("Seattle", "WA", "206", "98"),
    ("Austin", "TX", "512", "78"),
    ("Boston", "MA", "617", "02"),
    ("Chicago", "IL", "312", "60"),
    ("Phoenix", "AZ", "602", "85"),
    ("Portland", "OR", "503", "97"),
    ("Atlanta", "GA", "404", "30"),
    ("Miami", "FL", "305", "33"),
    ("Minneapolis", "MN", "612", "55"),
    ("Fargo", "ND", "701", "58"),
    ("Omaha", "NE", "402", "68"),
)
_CURRENCIES = ("Z-US$", "CAD$", "Z-US$", "Z-US$", "EURO", "Z-UK")
_ADDRESS_CODES = ("PRIMARY", "Other", "BILLING", "SHIPPING", "WAREHOUSE")
_DATES = tuple((date(2024, 1, 1) + timedelta(days=d)).isoformat() for d in range(366))
_ACCOUNTS = (
    "000-1100-00",
    "000-1200-00",
    "000-1300-00",
    "000-2100-00",
    "000-4100-00",
    "000-5100-00",
    "000-6150-00",
    "000-6170-00",
)
_TERMS = ("Net 30", "Net 15", "2% 10/Net 30", "Due on receipt", "Net 60")
_ITEM_CLASSES = ("FG", "RM", "SERVICE", "KIT", "MISC")
_UOMS = ("Each", "Box", "Case", "Hour", "Pair")
_ITEM_WORDS = (
    "Bracket",
    "Cable",
    "Adapter",
    "Monitor",
    "Keyboard",
    "Router",
    "Switch",
    "Battery",
    "Charger",
    "Sensor",
    "Valve",
    "Gasket",
)
_CHECKBOOKS = ("FIRST NATIONAL", "UPTOWN TRUST", "PAYROLL")

# Values that make clients prove they handle XML and whitespace correctly.
TRICKY_TEXT = "Smith & Sons <Wholesale> ]]> Ltd"
"""A value with ``&``, ``<``, ``>`` and a literal ``]]>`` (split CDATA on the wire)."""
PADDED_TEXT = "  Padded Name Ltd  "
"""A value with leading and trailing spaces that must survive unchanged."""
ACCENTED_TEXT = "Société Générale Québec"
"""A non-ASCII value (UTF-8 on the wire)."""


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _pool(name: str, size: int, make: Callable[[random.Random], str]) -> tuple[str, ...]:
    """A fixed pool of formatted values: rows pick from pools, which keeps them cheap."""
    rng = random.Random(f"pool:{name}")
    return tuple(make(rng) for _ in range(size))


_POOL_MASK = 4095
_NAMES = _pool("names", _POOL_MASK + 1, lambda r: f"{r.choice(_LATIN)} {r.choice(_SUFFIXES)}")
_STREET_POOL = _pool(
    "streets",
    _POOL_MASK + 1,
    lambda r: (
        f"{r.randrange(100, 1000)}-{r.randrange(1000, 10000)} "
        f"{r.choice(_LATIN)} {r.choice(_STREETS)}"
    ),
)
_LOCAL_NUMBERS = _pool(
    "phones", _POOL_MASK + 1, lambda r: f"{r.randrange(200, 1000)}-{r.randrange(10000):04d}"
)
_PHONES = tuple(
    tuple(f"({area}) {number}" for number in _LOCAL_NUMBERS[:512]) for _, _, area, _ in _CITIES
)
_ZIPS = tuple(tuple(f"{prefix}{n:03d}" for n in range(1000)) for _, _, _, prefix in _CITIES)
_AMOUNTS = _pool("amounts", _POOL_MASK + 1, lambda r: _money(r.randrange(100, 1_000_000)))


# Customers: the first row is the reference's example row, byte for byte.
_CUSTOMER_FIXED: tuple[Row, ...] = (
    (
        "CUST001",
        "Purus Limited",
        "Other",
        "373-1399 Ultrices St.",
        "Denver",
        "CO",
        "92336",
        "(303) 654-2228",
        "CAD$",
    ),
    ("CUST002", PADDED_TEXT, "PRIMARY", "12 Main St.", "Austin", "TX", "78701", None, "Z-US$"),
    ("CUST003", TRICKY_TEXT, "", "", "Boston", "MA", "02110", "(617) 555-0134", "Z-US$"),
    (
        "CUST004",
        ACCENTED_TEXT,
        "PRIMARY",
        "1200 Rue Sainte-Catherine",
        "Montréal",
        "QC",
        "H3B 1K9",
        "(514) 555-0199",
        "CAD$",
    ),
)


def _customers(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "Customers").getrandbits
    fixed = len(_CUSTOMER_FIXED)
    for i in range(size):
        r, q = bits(30), bits(30)  # the same draws for every row: row i depends on i only
        if i < fixed:
            yield _CUSTOMER_FIXED[i]
            continue
        c = q % len(_CITIES)
        city, state, _, _ = _CITIES[c]
        yield (
            f"CUST{i + 1:03d}",
            _NAMES[r & _POOL_MASK],
            "" if i % 23 == 7 else _ADDRESS_CODES[(q >> 4) % len(_ADDRESS_CODES)],
            _STREET_POOL[(r >> 12) & _POOL_MASK],
            city,
            state,
            _ZIPS[c][(q >> 8) % 1000],
            None if i % 17 == 5 else _PHONES[c][(q >> 18) & 511],
            _CURRENCIES[(r >> 24) % len(_CURRENCIES)],
        )


def _vendors(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "Vendors").getrandbits
    for i in range(size):
        r, q = bits(30), bits(30)
        c = q % len(_CITIES)
        city, state, _, _ = _CITIES[c]
        yield (
            f"V{i + 1:05d}",
            TRICKY_TEXT if i == 2 else _NAMES[r & _POOL_MASK],
            _STREET_POOL[(r >> 12) & _POOL_MASK],
            city,
            state,
            _ZIPS[c][(q >> 8) % 1000],
            None if i % 13 == 4 else _PHONES[c][(q >> 18) & 511],
            _TERMS[(r >> 24) % len(_TERMS)],
            "1" if i % 29 == 11 else "0",
        )


def _items(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "Items").getrandbits
    for i in range(size):
        r, q = bits(30), bits(30)
        if i == 1:
            notes: str | None = TRICKY_TEXT
        elif i == 2:
            notes = PADDED_TEXT
        elif i % 5 == 3:
            notes = ""
        elif i % 7 == 0:
            notes = f"Reorder from {_NAMES[q & _POOL_MASK]}"
        else:
            notes = None
        yield (
            f"ITM-{i + 1:05d}",
            f"{_LATIN[r % len(_LATIN)]} {_ITEM_WORDS[(r >> 8) % len(_ITEM_WORDS)]}",
            _ITEM_CLASSES[(r >> 12) % len(_ITEM_CLASSES)],
            _UOMS[(r >> 16) % len(_UOMS)],
            _AMOUNTS[(q >> 12) & _POOL_MASK],
            str((r >> 20) % 500),
            notes,
        )


def _order_comment(i: int) -> str | None:
    if i == 2 or i % 19 == 7:
        return TRICKY_TEXT
    if i % 13 == 4:
        return "  Deliver to back door  "
    if i % 11 == 3:
        return ""
    return None


def _order_headers(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "Sales Orders", "Header").getrandbits
    for i in range(size):
        r = bits(30)
        yield (
            f"ORD{i + 1:07d}",
            "Order" if r % 10 else "Quote",
            f"CUST{1 + (r >> 4) % 500:03d}",
            _DATES[(r >> 13) % len(_DATES)],
            _CURRENCIES[(r >> 22) % len(_CURRENCIES)],
            _order_comment(i),
        )


def _order_lines(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "Sales Orders", "Line").getrandbits
    for i in range(size):
        count = 1 + bits(2)
        order = f"ORD{i + 1:07d}"
        for line in range(count):
            r = bits(30)
            yield (
                order,
                str(16384 * (line + 1)),
                f"ITM-{1 + r % 300:05d}",
                f"{_LATIN[(r >> 9) % len(_LATIN)]} {_ITEM_WORDS[(r >> 16) % len(_ITEM_WORDS)]}",
                str(1 + (r >> 20) % 24),
                _AMOUNTS[(r >> 18) & _POOL_MASK],
            )


def _journal(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "GL Journal").getrandbits
    amount = ""
    for i in range(size):
        r = bits(30)
        debit_line = i % 2 == 0
        if debit_line:
            amount = _AMOUNTS[r & _POOL_MASK]
        if i == 3:
            description: str | None = PADDED_TEXT
        elif i % 9 == 4:
            description = ""
        elif i % 5 == 2:
            description = None
        else:
            description = "Month end accrual"
        yield (
            str(1001 + i // 2),
            _DATES[(i // 2) % len(_DATES)],
            f"JE-{_LATIN[(r >> 12) % len(_LATIN)].upper()}",
            _ACCOUNTS[(r >> 20) % len(_ACCOUNTS)],
            amount if debit_line else None,
            None if debit_line else amount,
            description,
        )


def _cash_receipts(seed: int, size: int) -> Iterator[Row]:
    bits = _rng(seed, "Cash Receipts").getrandbits
    for i in range(size):
        r = bits(30)
        yield (
            f"RCT{i + 1:06d}",
            f"CUST{1 + r % 500:03d}",
            None if i % 7 == 1 else _CHECKBOOKS[(r >> 10) % len(_CHECKBOOKS)],
            _AMOUNTS[(r >> 12) & _POOL_MASK],
            _DATES[(r >> 4) % len(_DATES)],
        )


CUSTOMERS = DataSource(
    "Customers",
    "MyDataSet",
    (
        Table(
            "Table01",
            (
                "AccountNumber",
                "AccountName",
                "AddressCode",
                "Address1",
                "City",
                "State",
                "ZIP",
                "Phone",
                "Currency",
            ),
            _customers,
        ),
    ),
    500,
)
SALES_ORDERS = DataSource(
    "Sales Orders",
    "SalesOrders",
    (
        Table(
            "Header",
            ("SopNumber", "SopType", "CustomerNumber", "DocumentDate", "CurrencyId", "Comment"),
            _order_headers,
        ),
        Table(
            "Line",
            ("SopNumber", "LineNumber", "ItemNumber", "Description", "Quantity", "UnitPrice"),
            _order_lines,
        ),
    ),
    200,
)
GL_JOURNAL = DataSource(
    "GL Journal",
    "NewDataSet",
    (
        Table(
            "Table",
            (
                "JournalEntry",
                "TransactionDate",
                "Reference",
                "AccountNumber",
                "Debit",
                "Credit",
                "Description",
            ),
            _journal,
        ),
    ),
    400,
)
VENDORS = DataSource(
    "Vendors",
    "MyDataSet",
    (
        Table(
            "Table01",
            (
                "VendorId",
                "VendorName",
                "Address1",
                "City",
                "State",
                "ZIP",
                "Phone",
                "PaymentTerms",
                "Hold",
            ),
            _vendors,
        ),
    ),
    120,
)
ITEMS = DataSource(
    "Items",
    "MyDataSet",
    (
        Table(
            "Table01",
            (
                "ItemNumber",
                "Description",
                "ItemClass",
                "UnitOfMeasure",
                "ListPrice",
                "QtyOnHand",
                "Notes",
            ),
            _items,
        ),
    ),
    300,
)
CASH_RECEIPTS = DataSource(
    "Cash Receipts",
    "NewDataSet",
    (
        Table(
            "Table",
            ("ReceiptNumber", "CustomerNumber", "CheckbookId", "Amount", "ReceiptDate"),
            _cash_receipts,
        ),
    ),
    25,
)

SOURCES: Mapping[str, DataSource] = {
    source.name: source
    for source in (CUSTOMERS, SALES_ORDERS, GL_JOURNAL, VENDORS, ITEMS, CASH_RECEIPTS)
}
"""Every seeded data source by name."""


def variable_filters(variables: Mapping[str, str | None]) -> dict[str, str]:
    """Column filters (lower-cased column name -> value) from ``GBL_<COLUMN>`` variables.

    Variables without the ``GBL_`` prefix or with a null value are ignored, as
    SmartConnect ignores global variables a query does not use.
    """
    filters: dict[str, str] = {}
    for key, value in variables.items():
        if value is not None and key[:4].upper() == "GBL_" and len(key) > 4:
            filters[key[4:].lower()] = value
    return filters


def iter_table_rows(
    table: Table, seed: int, size: int, filters: Mapping[str, str]
) -> Iterator[Row]:
    """Rows of one table, lazily, keeping only rows whose columns equal ``filters``."""
    rows = table.rows(seed, size)
    lowered = [column.lower() for column in table.columns]
    conditions = [
        (lowered.index(name), value) for name, value in filters.items() if name in lowered
    ]
    if not conditions:
        return rows
    return (row for row in rows if all(row[index] == value for index, value in conditions))
