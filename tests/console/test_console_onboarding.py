"""The operators' onboarding wizard and ministry pages in the console."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

import licensing.services
from accounts.login import agent_login
from accounts.models import Agent, AgentImportJob, Ministry, MinistryDomain, PendingRoleGrant
from audit.models import AuditEvent
from licensing.models import LicencePool
from tests.factories import AgentImportJobFactory, MinistryDomainFactory

pytestmark = pytest.mark.django_db

START = "/console/ministeres/nouveau/"
STEPS = {
    1: {"code": "interieur", "name": "Ministère de l'Intérieur", "siren": "110014016"},
    2: {"domains": "interieur.gouv.fr\nMI.gouv.fr", "sirets": "11001401600015"},
    3: {"admins": "cheffe.projet@interieur.gouv.fr, adjoint@mi.gouv.fr"},
    4: {
        "seats": "1000",
        "starts_on": "2025-01-01",
        "ends_on": "2027-12-31",
        "foreign_price_eur": "100",
        "sovereign_cost_eur": "12.50",
    },
    5: {
        "rollout_target_agents": "900",
        "rollout_target_date": "2027-06-30",
        "m0_due_on": "2026-06-30",
        "m0_target_agents": "300",
        "m1_due_on": "2026-01-31",
        "m1_target_agents": "50",
        "m1_label": "Cabinet",
        "residency_tags": "secnumcloud",
    },
}


def step_url(n: int) -> str:
    return f"{START}{n}/"


def written():
    """Everything an onboarding writes, counted."""
    return (
        Ministry.objects.count(),
        MinistryDomain.objects.count(),
        LicencePool.objects.count(),
        PendingRoleGrant.objects.count(),
        AuditEvent.objects.count(),
    )


def fill_steps(client, upto: int = 5) -> None:
    """Post steps 1 to ``upto``, each moving on to the next."""
    for n in range(1, upto + 1):
        response = client.post(step_url(n), STEPS[n])
        assert response.status_code == 302, response.content.decode()[-3000:]
        assert response["Location"] == step_url(n + 1)


def test_operator_onboards_a_ministry_step_by_step(client, world):
    """Six steps, going back keeps entries, nothing is written before the confirmation,
    which creates everything; the ministry page then shows it."""
    client.force_login(world.operator)
    home = client.get("/console/").content.decode()
    assert 'id="link-onboarding"' in home and "Embarquer un ministère" in home
    first = client.get(START).content.decode()
    assert "fr-stepper" in first and "Étape 1 sur 6" in first and "Identité" in first
    before = written()
    fill_steps(client, upto=3)
    # Back from step 4 to step 3, then 2: what was typed is still there.
    client.post(step_url(4), {**STEPS[4], "back": "1"})
    assert "adjoint@mi.gouv.fr" in client.get(step_url(3)).content.decode()
    assert "MI.gouv.fr" in client.get(step_url(2)).content.decode()
    fill_steps(client, upto=5)
    review = client.get(step_url(6))
    assert review.status_code == 200
    page = review.content.decode()
    assert "Vérification et confirmation" in page and "mi.gouv.fr" in page
    assert "900" in page and "secnumcloud" in page and "Cabinet" in page
    assert written() == before  # nothing yet
    response = client.post(step_url(6), {"confirm": "1"})
    assert response.status_code == 302
    assert response["Location"] == "/console/ministeres/interieur/"

    ministry = Ministry.objects.get(code="interieur")
    assert ministry.state == "pilot" and ministry.siren == "110014016"
    assert set(ministry.domains.values_list("domain", flat=True)) == {
        "interieur.gouv.fr",
        "mi.gouv.fr",
    }
    assert list(ministry.sirets.values_list("siret", flat=True)) == ["11001401600015"]
    pool = ministry.licence_pools.get()
    assert pool.seats == 1000 and str(pool.sovereign_cost_eur) == "12.50"
    assert set(ministry.pending_grants.values_list("email", flat=True)) == {
        "cheffe.projet@interieur.gouv.fr",
        "adjoint@mi.gouv.fr",
    }
    assert (ministry.rollout_target_agents, str(ministry.rollout_target_date)) == (
        900,
        "2027-06-30",
    )
    assert list(ministry.milestones.values_list("target_agents", "label")) == [
        (50, "Cabinet"),
        (300, ""),
    ]
    assert ministry.residency_tags == ["secnumcloud"]
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"ministry.create", "licence_pool.create", "role_grant.invite"} <= actions
    assert "ministry_onboarding" not in client.session

    detail = client.get(response["Location"]).content.decode()
    assert "Ministère de l&#x27;Intérieur" in detail and "embarqué" in detail
    assert 'data-state="pilot"' in detail and 'id="rollout-progress"' in detail
    assert 'id="checklist-interieur"' in detail
    assert 'value="rolling_out"' in detail and 'value="generalised"' not in detail


def test_steps_cannot_be_skipped(client, world):
    """A later step opened with earlier ones missing sends back to the first one missing."""
    client.force_login(world.operator)
    assert client.get(step_url(4))["Location"] == step_url(1)
    fill_steps(client, upto=2)
    assert client.get(step_url(6))["Location"] == step_url(3)
    assert client.get(f"{START}7/").status_code == 404


@pytest.mark.parametrize(
    ("n", "change", "message"),
    [
        (1, {"siren": "110014017"}, "clé de contrôle"),
        (1, {"code": "alpha"}, "Un ministère avec ce code existe déjà."),
        (2, {"domains": "alpha.gouv.fr"}, "Déjà rattaché à un autre ministère : alpha.gouv.fr"),
        (2, {"domains": ""}, "Ce champ est obligatoire."),
        (3, {"admins": "boss@ailleurs.fr"}, "n’est pas dans les domaines"),
        (4, {"ends_on": "2024-12-31"}, "La période se termine avant de commencer."),
        (
            5,
            {"m0_target_agents": "10"},
            "moins d’agents (10) que le précédent (50)",
        ),
        (5, {"m0_due_on": "2027-07-01"}, "après la date de l’objectif"),
        (5, {"m0_target_agents": ""}, "Un jalon doit avoir un nombre d’agents."),
        (5, {"residency_tags": "SecNumCloud"}, "n’est pas une étiquette valide"),
    ],
)
def test_an_invalid_step_shows_its_error_in_french_and_stays(client, world, n, change, message):
    """Each step checks its own fields, shows a precise French error in DSFR style, and
    does not move on; nothing is written."""
    client.force_login(world.operator)
    fill_steps(client, upto=n - 1)
    before = written()
    response = client.post(step_url(n), {**STEPS[n], **change})
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page, page[page.find("fr-error") - 500 :][:3000]
    assert "fr-input-group--error" in page or "fr-message--error" in page
    assert client.get(step_url(n + 1))["Location"] == step_url(n)
    assert written() == before


def test_a_domain_claimed_before_confirmation_writes_nothing(client, world):
    """A domain another ministry took meanwhile: the confirmation is refused with the
    reason shown, and no ministry is created."""
    client.force_login(world.operator)
    fill_steps(client)
    MinistryDomainFactory(ministry=world.b, domain="mi.gouv.fr")
    before = written()
    response = client.post(step_url(6), {"confirm": "1"}, follow=True)
    page = response.content.decode()
    assert "Déjà rattaché à un autre ministère : mi.gouv.fr" in page
    assert not Ministry.objects.filter(code="interieur").exists()
    assert written() == before


def test_a_failure_during_the_onboarding_rolls_everything_back(client, world, monkeypatch):
    """When a write fails after the ministry was created (here the licence pool), the
    review shows the error on its step and nothing at all is left."""

    def refuse(**kwargs):
        raise ValidationError({"seats": ["Refused for the test."]})

    monkeypatch.setattr(licensing.services, "licence_pool_create", refuse)
    client.force_login(world.operator)
    fill_steps(client)
    before = written()
    response = client.post(step_url(6), {"confirm": "1"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "rien n’a été enregistré" in page and "Refused for the test." in page
    section = page[page.index('id="review-step-4"') : page.index('id="review-step-5"')]
    assert "Refused for the test." in section
    assert not Ministry.objects.filter(code="interieur").exists()
    assert written() == before
    assert "ministry_onboarding" in client.session  # the entries are kept to correct them


@pytest.mark.parametrize("caller", ["admin_a", "auditor_a", "national_auditor", "agent_a"])
def test_only_operators_onboard_and_move_states(client, world, caller):
    """Admins, auditors and agents get 403 on the wizard and on state moves."""
    client.force_login(getattr(world, caller))
    assert client.get(START).status_code == 403
    assert client.get(step_url(1)).status_code == 403
    assert client.post(step_url(1), STEPS[1]).status_code == 403
    response = client.post("/console/ministeres/alpha/etat/", {"state": "generalised"})
    assert response.status_code == 403
    assert Ministry.objects.get(code="alpha").state == "rolling_out"
    assert "ministry_onboarding" not in client.session
    assert 'id="link-onboarding"' not in client.get("/console/").content.decode()


def test_anonymous_is_sent_to_login(client, world):
    """The wizard and state moves need a session."""
    for response in (
        client.get(step_url(1)),
        client.post("/console/ministeres/alpha/etat/", {"state": "suspended"}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/console/connexion/")
    assert Ministry.objects.get(code="alpha").state == "rolling_out"


def test_ministry_page_is_scoped(client, world):
    """A ministry's admin reads its page without state buttons; another ministry's admin
    gets 404."""
    client.force_login(world.admin_a)
    page = client.get("/console/ministeres/alpha/").content.decode()
    assert world.a.name in page and 'id="state-moves"' not in page
    client.force_login(world.admin_b)
    assert client.get("/console/ministeres/alpha/").status_code == 404


@pytest.mark.parametrize(
    ("start", "target", "ok"),
    [
        ("pilot", "rolling_out", True),
        ("rolling_out", "generalised", True),
        ("generalised", "rolling_out", False),
        ("rolling_out", "pilot", False),
        ("pilot", "generalised", False),
        ("generalised", "suspended", True),
        ("suspended", "generalised", True),
    ],
)
def test_state_moves_only_forward_from_the_console(client, world, start, target, ok):
    """Operators move the rollout forward, suspend and resume; backward moves are refused
    with the reason, and audited only when they happen."""
    Ministry.objects.filter(pk=world.a.pk).update(state=start)
    client.force_login(world.operator)
    response = client.post("/console/ministeres/alpha/etat/", {"state": target}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    world.a.refresh_from_db()
    assert world.a.state == (target if ok else start)
    updates = AuditEvent.objects.filter(action="ministry.update").count()
    if ok:
        assert "fr-alert--success" in page and updates == 1
    else:
        assert "ne peut pas passer" in page and "fr-alert--error" in page and updates == 0


def test_suspending_from_the_console_blocks_logins(client, world):
    """After an operator suspends the ministry, its agents' logins are refused."""
    from accounts.login import LoginRefused

    Agent.objects.filter(pk=world.agent_a.pk).update(sub="sub-agent-a")
    client.force_login(world.operator)
    client.post("/console/ministeres/alpha/etat/", {"state": "suspended"})
    with pytest.raises(LoginRefused) as refused:
        agent_login(claims={"sub": "sub-agent-a", "email": world.agent_a.email})
    assert refused.value.reason == "ministry_suspended"


def test_goal_progress_counts_agents_active_in_the_last_30_days(client, world):
    """The ministry page shows active agents against the goal, and milestones reached."""
    Ministry.objects.filter(pk=world.a.pk).update(
        rollout_target_agents=4, rollout_target_date=timezone.localdate() + timedelta(days=90)
    )
    world.a.milestones.create(due_on=timezone.localdate() + timedelta(days=30), target_agents=2)
    now = timezone.now()
    Agent.objects.filter(pk__in=[world.agent_a.pk, world.admin_a.pk]).update(last_login=now)
    Agent.objects.filter(pk=world.auditor_a.pk).update(last_login=now - timedelta(days=31))
    client.force_login(world.operator)
    page = client.get("/console/ministeres/alpha/").content.decode()
    assert 'max="4" value="2"' in page and "(50 %)" in page
    assert "atteint" in page


def test_the_goal_sentence_is_one_and_agrees_in_number(client, world):
    """The ministry page and the dashboard say the goal's progress with the same words,
    singular for one agent, plural for two."""
    Ministry.objects.filter(pk=world.a.pk).update(
        rollout_target_agents=4, rollout_target_date=timezone.localdate() + timedelta(days=90)
    )
    Agent.objects.filter(pk=world.agent_a.pk).update(last_login=timezone.now())
    client.force_login(world.operator)
    one = "1 agent connecté depuis moins de 30 jours pour un objectif de 4 d’ici le"
    for url in ("/console/ministeres/alpha/", "/console/tableau-de-bord/alpha/"):
        page = client.get(url).content.decode()
        assert one in page, url
    Agent.objects.filter(pk=world.admin_a.pk).update(last_login=timezone.now())
    two = "2 agents connectés depuis moins de 30 jours pour un objectif de 4 d’ici le"
    for url in ("/console/ministeres/alpha/", "/console/tableau-de-bord/alpha/"):
        assert two in client.get(url).content.decode(), url


def test_import_page_shows_progress_and_refreshes_while_running(client, world):
    """A running import shows rows done out of the total and refreshes itself; a
    finished one stops refreshing."""
    job = AgentImportJobFactory(ministry=world.a, state="running", rows_total=200, rows_done=50)
    client.force_login(world.admin_a)
    page = client.get(f"/console/imports/{job.pk}/").content.decode()
    assert '<meta http-equiv="refresh"' in page
    assert 'max="200" value="50"' in page and "50 sur 200 lignes traitées (25 %)" in page
    AgentImportJob.objects.filter(pk=job.pk).update(state="done", rows_done=200)
    page = client.get(f"/console/imports/{job.pk}/").content.decode()
    assert "http-equiv" not in page and 'value="200"' in page
