"""Admitted answers filled in from a template are byte for byte the answers rendered for each alone."""

from __future__ import annotations

import json

import pytest
from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.leases import LeaseBook
from gpuwatch.exposure.publication import SLOTS_STAND_IN, AdmitRoute, AdmittedTemplate, _rendered, with_lease
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, Slots


@pytest.fixture
def publication():
    board = Board("sim:test", lambda d, _now: d, book=LeaseBook(PolicyConfig()))
    board.publish(node(gpu(0, slots=Slots(12, 11, 10)), gpu(1, slots=Slots(12, 11, 10))))
    return board.current


@pytest.mark.parametrize(
    ("priority", "pinned", "expected_s", "take"),
    [
        (PriorityClass.DEFAULT, None, None, True),
        (PriorityClass.CRITICAL, 1, 7.5, True),
        (PriorityClass.SHEDDABLE, None, 600.0, True),
        (PriorityClass.DEFAULT, 0, None, False),  # a dry run: no lease, slots not taken
    ],
)
def test_every_admission_is_the_answer_rendered_for_it(publication, priority, pinned, expected_s, take):
    seen_slots = []
    for _ in range(25):  # past the slots: the last answers are held back
        answer = publication.admit_answer(
            AdmitRoute.PLAIN, priority, pinned, take=take, expected_s=expected_s
        )
        if not answer.admission.admitted:
            assert answer.response.status == 503
            continue
        planned = publication.planned(priority, expected_s)[0] if take else None
        slots_left = json.loads(answer.response.body)["slots"]
        alone = _rendered(answer.admission, publication.decision.sequence, slots_left, planned)
        if answer.lease is not None:
            alone = with_lease(alone, answer.lease.id)
        assert (answer.response.head, answer.response.body) == (alone.head, alone.body)
        seen_slots.append(slots_left)
    assert len(set(seen_slots)) == (len(seen_slots) if take else 1)  # each admission leaves one fewer


def test_an_answer_that_does_not_split_cleanly_is_rendered_whole(publication):
    rendered = _rendered(
        publication.admit_answer(AdmitRoute.PLAIN, PriorityClass.DEFAULT, None).admission,
        publication.decision.sequence,
        SLOTS_STAND_IN,
    )
    assert AdmittedTemplate.of(rendered) is not None
    twice = type(rendered)(200, rendered.head, rendered.body + rendered.body)
    assert AdmittedTemplate.of(twice) is None
