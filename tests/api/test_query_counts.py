"""List endpoints run a fixed number of queries, whatever the page holds."""

import pytest

from tests.factories import AgentFactory, MinistryFactory
from tests.support.clients import client_as

pytestmark = pytest.mark.django_db

# Every session-authenticated request starts with the same three queries:
# 1. the session row, 2. the agent, 3. the agent's role grants (access_for).
SESSION_AND_ACCESS = 3


@pytest.mark.parametrize(
    ("path", "own_queries"),
    [
        # count, page of ministries, their domains, their SIRETs, their milestones
        ("/api/v1/ministries/", 5),
        # count, page of agents joined to their ministry
        ("/api/v1/agents/", 2),
        # count, page of grants joined to agent and ministry
        ("/api/v1/role-grants/", 2),
        # count, page of tokens joined to ministry and creator
        ("/api/v1/api-tokens/", 2),
        # count, page of events
        ("/api/v1/audit-events/", 2),
        # count, page of pools joined to their ministry
        ("/api/v1/licence-pools/", 2),
    ],
)
@pytest.mark.parametrize("size", [1, 20])
def test_list_query_count_is_pinned(world, django_assert_num_queries, path, own_queries, size):
    """The count does not grow with the number of rows listed (no N+1)."""
    for _ in range(size):
        ministry = MinistryFactory()
        admin = AgentFactory(ministry=ministry)
        client_as(world.operator).post(
            "/api/v1/role-grants/",
            {"agent": str(admin.pk), "role": "ministry_admin", "ministry": ministry.code},
        )
        client_as(world.operator).post(
            "/api/v1/api-tokens/", {"name": "t", "ministry": ministry.code, "role": "auditor"}
        )
    client = client_as(world.operator)
    with django_assert_num_queries(SESSION_AND_ACCESS + own_queries):
        response = client.get(path)
    assert response.status_code == 200
    assert len(response.json()["results"]) >= size
