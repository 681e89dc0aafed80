"""_dataframes.py: a DataSet table as records, pandas, polars and Arrow tables."""

from __future__ import annotations

import sys

import pandas
import polars
import pyarrow
import pytest

from smartconnect_async import DataSet

CUSTOMERS = [
    {"AccountNumber": "C1", "AccountName": "Acme", "Phone": None},
    {"AccountNumber": "C2", "AccountName": "", "Phone": "555"},
]
ORDERS = [{"OrderNumber": "O1", "Total": "12.50"}]
DATA = DataSet(tables={"Customers": CUSTOMERS, "Orders": ORDERS})


def test_to_records_copies_the_rows_of_one_table() -> None:
    records = DATA.to_records()
    assert records == CUSTOMERS
    records[0]["AccountName"] = "changed"
    assert CUSTOMERS[0]["AccountName"] == "Acme"  # the data set is not changed
    assert DATA.to_records("Orders") == ORDERS
    assert DATA.to_records("Invoices") == []  # a table with no rows is not in an answer
    assert DataSet(tables={}).to_records() == []


def test_to_pandas_keeps_columns_text_and_nulls() -> None:
    frame = DATA.to_pandas()
    assert list(frame.columns) == ["AccountNumber", "AccountName", "Phone"]
    assert frame.to_dict("records") == CUSTOMERS
    assert frame.loc[0, "Phone"] is None
    assert all(dtype is pandas.api.types.pandas_dtype(object) for dtype in frame.dtypes)
    assert DATA.to_pandas("Orders").to_dict("records") == ORDERS
    assert DATA.to_pandas("Invoices").shape == (0, 0)


def test_to_polars_is_all_strings() -> None:
    frame = DATA.to_polars()
    assert frame.schema == polars.Schema(
        {"AccountNumber": polars.String, "AccountName": polars.String, "Phone": polars.String}
    )
    assert frame.to_dicts() == CUSTOMERS
    assert DATA.to_polars("Invoices").shape == (0, 0)


def test_to_arrow_is_all_strings() -> None:
    table = DATA.to_arrow("Orders")
    assert table.schema == pyarrow.schema(
        [("OrderNumber", pyarrow.string()), ("Total", pyarrow.string())]
    )
    assert table.to_pylist() == ORDERS
    assert DATA.to_arrow().to_pylist() == CUSTOMERS


@pytest.mark.parametrize(
    ("method", "module", "extra"),
    [
        ("to_pandas", "pandas", "pandas"),
        ("to_polars", "polars", "polars"),
        ("to_arrow", "pyarrow", "parquet"),
    ],
)
def test_a_missing_library_names_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, method: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError) as info:
        getattr(DATA, method)()
    assert str(info.value) == (
        f"DataSet.{method} needs {module}: pip install 'smartconnect-async[{extra}]'"
    )


def test_frames_are_not_imported_until_asked_for() -> None:
    assert pandas.__name__ == "pandas"  # imported by this test module, not by the library
    import subprocess

    code = (
        "import sys, smartconnect_async\n"
        "assert not {'pandas', 'polars', 'pyarrow'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
