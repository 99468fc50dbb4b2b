from __future__ import annotations

import falcon.testing
import pytest

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from tests.manage.helpers import Customer


@pytest.fixture
def customer(client: falcon.testing.TestClient, ctx: Context, shop: ShopRef) -> Customer:
    return Customer(client, ctx, shop.domain)
