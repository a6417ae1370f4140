"""Each search term's products as compressed bitmaps: the `search_postings` table.

`search_terms` has a row per (term, product) with its weight; a search that counts and ranks
its matches there reads every matching row, and MariaDB spends 0.2-1.5 microseconds a row:
"cast iron" (16,000 matches of 100,000 products) took 24 ms. `search_postings` keeps the same
facts a row per term: the ids of the term's products as three roaring bitmaps, one per weight
a term can have for a product (in the name and the description: 11; the name only: 10; the
description only: 1). A search reads its words' rows (a few kilobytes) and counts, intersects
and ranks in memory in well under a millisecond, on SQLite and MySQL alike (services.search).

The two tables change together, in the transaction of every product write: `change()` takes
the rows search_terms lost and gained. A term's row is locked before it is read and written
again (MySQL: an insert that creates or locks it, then a locking read), always in term order,
so two writers never lose each other's products nor wait for each other in a circle. SQLite
has one writer at a time. `rebuild()` writes the whole table again from search_terms.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from pyroaring import BitMap
from sqlalchemy.engine import Connection

# A term's weight for a product -> its bitmap's place in a row (the columns' order).
WEIGHTS = (11, 10, 1)
_TIER = {weight: i for i, weight in enumerate(WEIGHTS)}
COLUMNS = "in_both, in_name, in_description"
_CHUNK = 500
_READ = 50_000

Tiers = tuple[BitMap, BitMap, BitMap]


def load(blob: bytes | None) -> BitMap:
    return BitMap.deserialize(blob) if blob else BitMap()


def dump(bitmap: BitMap) -> bytes:
    bitmap.run_optimize()
    return bitmap.serialize()


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _mark(connection: Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _is_mysql(connection: Connection) -> bool:
    return connection.dialect.name in ("mysql", "mariadb")


def read(connection: Connection, terms: list[str], *, lock: bool = False) -> dict[str, Tiers]:
    """The rows of these terms that exist (locked for update on MySQL with `lock`)."""
    found: dict[str, Tiers] = {}
    mark = _mark(connection)
    suffix = " FOR UPDATE" if lock and _is_mysql(connection) else ""
    for chunk in _chunks(sorted(terms)):
        result = connection.exec_driver_sql(
            f"SELECT term, {COLUMNS} FROM search_postings WHERE term IN "
            f"({', '.join([mark] * len(chunk))}) ORDER BY term{suffix}", tuple(chunk))
        for term, both, name, description in result:
            found[term] = (load(both), load(name), load(description))
    return found


def change(connection: Connection, removed: Iterable[tuple[str, int]] = (),
           added: Iterable[tuple[str, int, int]] = ()) -> None:
    """Take products out of terms (`removed`: term, product id) and put them in with a
    weight (`added`: term, product id, weight), as search_terms just changed, in the
    caller's transaction."""
    gone: dict[str, set[int]] = defaultdict(set)
    come: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for term, product_id in removed:
        gone[term].add(int(product_id))
    for term, product_id, weight in added:
        come[term].append((int(product_id), _TIER[int(weight)]))
    terms = sorted(gone.keys() | come.keys())
    if not terms:
        return
    mysql = _is_mysql(connection)
    mark = _mark(connection)
    if mysql:
        # Every row there is to change exists and is locked, in term order, before it is read.
        empty = dump(BitMap())
        for chunk in _chunks(terms, 2000):
            connection.exec_driver_sql(
                f"INSERT INTO search_postings (term, {COLUMNS}) VALUES ({mark}, {mark}, {mark}, "
                f"{mark}) ON DUPLICATE KEY UPDATE term = term",
                [(term, empty, empty, empty) for term in chunk])
    rows = read(connection, terms, lock=True)
    keep, drop = [], []
    for term in terms:
        tiers = rows.get(term) or (BitMap(), BitMap(), BitMap())
        out = gone.get(term)
        if out:
            for bitmap in tiers:
                bitmap.difference_update(BitMap(out))
        for product_id, tier in come.get(term, ()):
            for i, bitmap in enumerate(tiers):
                if i == tier:
                    bitmap.add(product_id)
                else:
                    bitmap.discard(product_id)
        if any(tiers):
            keep.append((term, *(dump(bitmap) for bitmap in tiers)))
        elif term in rows:
            drop.append(term)
    write(connection, keep)
    for chunk in _chunks(drop):
        connection.exec_driver_sql(
            f"DELETE FROM search_postings WHERE term IN ({', '.join([mark] * len(chunk))})",
            tuple(chunk))


def write(connection: Connection, rows: list[tuple[str, bytes, bytes, bytes]]) -> None:
    """Write these rows (term, then the three bitmaps serialized), new or replacing."""
    if not rows:
        return
    mark = _mark(connection)
    values = f"({mark}, {mark}, {mark}, {mark})"
    if _is_mysql(connection):
        sql = (f"INSERT INTO search_postings (term, {COLUMNS}) VALUES {values} "
               f"ON DUPLICATE KEY UPDATE in_both = VALUES(in_both), in_name = VALUES(in_name), "
               f"in_description = VALUES(in_description)")
    else:
        sql = f"INSERT OR REPLACE INTO search_postings (term, {COLUMNS}) VALUES {values}"
    for chunk in _chunks(rows, 2000):
        connection.exec_driver_sql(sql, chunk)


def rebuild(connection: Connection) -> int:
    """Write every row again from search_terms (read in term order, a term's rows together);
    returns the number of terms."""
    connection.exec_driver_sql("DELETE FROM search_postings")
    count = 0
    batch: list[tuple[str, bytes, bytes, bytes]] = []
    term_now: str | None = None
    tiers: list[list[int]] = [[], [], []]

    def flush_term() -> None:
        if term_now is not None:
            batch.append((term_now, *(dump(BitMap(ids)) for ids in tiers)))

    mark = _mark(connection)
    last: tuple[str, int] | None = None
    while True:
        # A chunk of rows at a time, in key order (a term's rows can span two chunks).
        if last is None:
            chunk = connection.exec_driver_sql(
                "SELECT term, product_id, weight FROM search_terms "
                f"ORDER BY term, product_id LIMIT {_READ}").all()
        else:
            chunk = connection.exec_driver_sql(
                f"SELECT term, product_id, weight FROM search_terms WHERE term > {mark} OR "
                f"(term = {mark} AND product_id > {mark}) ORDER BY term, product_id "
                f"LIMIT {_READ}", (last[0], last[0], last[1])).all()
        if not chunk:
            break
        for term, product_id, weight in chunk:
            if term != term_now:
                flush_term()
                count += term_now is not None
                term_now, tiers = term, [[], [], []]
            tiers[_TIER[int(weight)]].append(int(product_id))
        last = (chunk[-1][0], int(chunk[-1][1]))
        if len(batch) >= 2000:
            write(connection, batch)
            batch = []
    flush_term()
    count += term_now is not None
    write(connection, batch)
    return count
