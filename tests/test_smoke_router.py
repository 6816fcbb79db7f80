import pytest_twisted

from tests.harness import connect


@pytest_twisted.ensureDeferred
async def test_hub_lists_nothing_at_first(router):
    s = await connect(router.backend_url)
    assert await s.call("obsmesh.consumer.get_data_node") == []
    s.leave()
