"""A customer's address book under concurrent changes: one default, nothing lost."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import Address
from shop.services import addresses
from tests import factories as f
from tests.concurrency import raised, run_concurrently


@pytest.mark.mysql_only
def test_addresses_saved_from_several_tabs_at_once_are_all_kept_with_one_default(app):
    """Four tabs saving a new address at once (each the default, or the first): MySQL chose
    a deadlock victim among the defaults' updates (a 503, "the shop cannot reach its
    database", and that address lost; 129 in an audit's log), and under READ COMMITTED two
    tabs could each make their own the default. The account's row lock now takes the changes
    one at a time. (In process, without the requests around them, the old code did not
    deadlock here in three runs: this holds the rule, the audit's HTTP race showed the
    failure.)"""
    user_id = f.user("tabs@example.com").id
    for n in range(40):  # other customers' books: the updates go by the user_id index
        other = f.user(f"other{n}@example.com").id
        db.session.add_all([Address(user_id=other, is_default=k == 0,
                                    **dict(f.ADDRESS, line1=f"{k} Side St")) for k in range(3)])
    db.session.commit()

    def save(n: int, default: bool):
        return lambda: addresses.save(user_id, dict(f.ADDRESS, line1=f"{n} Main St"),
                                      make_default=default).id

    for round_ in range(2):
        results = run_concurrently(app, [save(10 * round_ + n, n % 2 == 0) for n in range(8)])
        assert raised(results) == []
    book = list(db.session.execute(select(Address).where(Address.user_id == user_id))
                .scalars())
    assert len(book) == 16
    assert sum(a.is_default for a in book) == 1

    ids = [a.id for a in book]
    results = run_concurrently(app, [
        lambda: addresses.make_default(user_id, ids[0]),
        lambda: addresses.delete(user_id, ids[1]),
        lambda: addresses.make_default(user_id, ids[2]),
        lambda: addresses.delete(user_id, ids[3])])
    assert raised(results) == []
    book = list(db.session.execute(select(Address).where(Address.user_id == user_id))
                .scalars())
    assert len(book) == 14 and sum(a.is_default for a in book) == 1
