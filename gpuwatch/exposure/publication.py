"""One decision rendered once into what the exposure serves: bodies, headers, agent lines.

Built on the sampler thread each time a decision is published, so that a request does little
more than pick ready bytes. Answers for a GPU pinned with `gpu=` are rendered on first use and
kept for the life of the publication (at most classes x GPUs of them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gpuwatch.exposure.agent import agent_line
from gpuwatch.exposure.documents import admission_document, state_document
from gpuwatch.exposure.http.responses import (
    JSON,
    Response,
    build_response,
    json_bytes,
    json_response,
    with_status,
)
from gpuwatch.exposure.tally import tally_slot
from gpuwatch.policy.admission import Admission, admit
from gpuwatch.policy.decision import NodeDecision, PriorityClass

# Denials come in this many Retry-After variants; a response picks one at random, so clients
# told to come back do not all come back in the same second. A power of two: picked with
# `getrandbits(JITTER_BITS)`.
JITTER_BITS = 3
JITTER_VARIANTS = 1 << JITTER_BITS
# Jitters handed to `admit` (which scales its Retry-After by 1 + jitter x the configured ratio),
# spread evenly over [-1, 1].
_JITTERS = tuple(-1.0 + (2 * k + 1) / JITTER_VARIANTS for k in range(JITTER_VARIANTS))


class AdmitRoute(enum.Enum):
    """An admit endpoint, valued by the status it denies with."""

    PLAIN = 503  # /v1/admit
    NGINX = 403  # /v1/admit/nginx: auth_request understands only 2xx, 401 and 403
    ENVOY = 429  # /v1/admit/envoy: ext_authz treats 5xx as the service failing


@dataclass(frozen=True, slots=True)
class AdmitAnswer:
    """An admit answer in its jitter variants (the same response repeated when admitted)."""

    responses: tuple[Response, ...]
    tally: int  # AdmissionTally slot to count it in


def _admission_headers(admission: Admission, sequence: int) -> list[tuple[str, str]]:
    headers = [
        ("X-GPUWatch-State", admission.state.value),
        ("X-GPUWatch-Pressure", f"{admission.pressure:.4f}"),
        ("X-GPUWatch-Reason", admission.reason),
        ("X-GPUWatch-Sequence", str(sequence)),
    ]
    if admission.admitted and admission.gpu is not None:
        headers.append(("X-GPUWatch-GPU", str(admission.gpu.index)))
    if not admission.admitted and admission.retry_after_s is not None:
        headers.append(("Retry-After", str(admission.retry_after_s)))
    return headers


def _admissions(decision: NodeDecision, priority: PriorityClass, gpu: int | None) -> tuple[Admission, ...]:
    """The answer in its JITTER_VARIANTS jitters; an admission needs no jitter, so only one call."""
    first = admit(decision, priority, gpu=gpu, jitter=_JITTERS[0])
    if first.admitted:
        return (first,) * JITTER_VARIANTS
    return (first, *(admit(decision, priority, gpu=gpu, jitter=j) for j in _JITTERS[1:]))


def _render(admissions: tuple[Admission, ...], sequence: int) -> dict[AdmitRoute, AdmitAnswer]:
    """The three routes' answers to the same jittered admissions.

    Each distinct Retry-After is rendered once, and the routes differ only in the status line.
    """
    first = admissions[0]
    rendered: dict[int | None, Response] = {}
    for admission in admissions:
        if admission.retry_after_s not in rendered:
            body = json_bytes(admission_document(admission, sequence))
            headers = _admission_headers(admission, sequence)
            rendered[admission.retry_after_s] = build_response(200, JSON, body, headers)
    plain = tuple(rendered[a.retry_after_s] for a in admissions)
    slot = tally_slot(first.priority, admitted=first.admitted)
    if first.admitted:
        return dict.fromkeys(AdmitRoute, AdmitAnswer(plain, slot))
    by_status = {
        route: {id(r): with_status(r, route.value) for r in rendered.values()} for route in AdmitRoute
    }
    return {route: AdmitAnswer(tuple(by_status[route][id(r)] for r in plain), slot) for route in AdmitRoute}


class Publication:
    """Everything served for one NodeDecision.

    Immutable once published, except the cache of pinned-GPU answers, which only the event-loop
    thread fills.
    """

    def __init__(self, decision: NodeDecision, source: str) -> None:
        self.decision = decision
        self._answers: dict[tuple[PriorityClass, int | None], dict[AdmitRoute, AdmitAnswer]] = {
            (priority, None): self._admit_answers(priority, None) for priority in PriorityClass
        }
        admitted = {
            p for p in PriorityClass if self._answers[p, None][AdmitRoute.PLAIN].responses[0].status == 200
        }
        self.state_body = json_bytes(state_document(decision, source, frozenset(admitted)))
        node_headers = [
            ("X-GPUWatch-State", decision.state.value),
            ("X-GPUWatch-Pressure", f"{decision.pressure:.4f}"),
            ("X-GPUWatch-Sequence", str(decision.sequence)),
        ]
        self.state = build_response(200, JSON, self.state_body, node_headers)
        self.pressure_text = f"{min(1.0, max(0.0, decision.pressure)):.4f}"
        self._gpu_keys: Mapping[str, int] = {
            key: gpu.index for gpu in decision.gpus for key in (str(gpu.index), gpu.uuid.lower())
        }
        self.ready = self._readiness(ready=PriorityClass.DEFAULT in admitted)
        self.agent_node = agent_line(
            decision.state, decision.pressure, admits_default=PriorityClass.DEFAULT in decision.admits
        )
        self.agent_gpus: Mapping[str, bytes] = {
            key: agent_line(gpu.state, gpu.pressure, admits_default=PriorityClass.DEFAULT in gpu.admits)
            for gpu in decision.gpus
            for key in (str(gpu.index), gpu.uuid.lower())
        }

    def gpu_index(self, text: str) -> int | None:
        """The index of the GPU `text` names (an index or a uuid, any case), else None."""
        return self._gpu_keys.get(text.lower())

    def admit_answer(self, route: AdmitRoute, priority: PriorityClass, gpu: int | None) -> AdmitAnswer:
        """The answer to an admit request; raises UnknownGpuError for a GPU the node lacks."""
        answers = self._answers.get((priority, gpu))
        if answers is None:
            answers = self._admit_answers(priority, gpu)
            self._answers[priority, gpu] = answers
        return answers[route]

    def agent_answers(self) -> tuple[bytes, Mapping[str, bytes]]:
        """The agent line for the node, and per GPU by index and lower-case uuid."""
        return self.agent_node, self.agent_gpus

    def _admit_answers(self, priority: PriorityClass, gpu: int | None) -> dict[AdmitRoute, AdmitAnswer]:
        return _render(_admissions(self.decision, priority, gpu), self.decision.sequence)

    def _readiness(self, *, ready: bool) -> Response:
        """/readyz: 200 while /v1/admit admits `default` work, else 503.

        That is: the node's state admits `default` and some GPU does.
        """
        document = {
            "ready": ready,
            "state": self.decision.state.value,
            "sentence": self.decision.sentence,
            "sequence": self.decision.sequence,
        }
        return json_response(200 if ready else 503, document)
