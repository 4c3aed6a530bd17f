"""One decision made ready to serve: admit answers with their leases, state, readiness, agent lines.

Built on the sampler thread each time a decision is published; answered from on the event loop.
Every admission is a lease that takes its slot on its GPU at once in the lease book, so requests
between two samples are paced by the slots the decision offered, never all answered alike. An
answer is rendered once per distinct content and kept for the life of the publication: admitted
answers by (GPU, duration) as templates, with stand-ins for the slots left and the lease id that
each admission fills in with its own, and held-back answers, which stay held until the next
decision (slots taken since it only grow), in their eight jitter variants.
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
from gpuwatch.exposure.leases import Held, LeaseBook
from gpuwatch.exposure.tally import tally_slot
from gpuwatch.policy.admission import Admission, admit
from gpuwatch.policy.decision import NodeDecision, PriorityClass
from gpuwatch.policy.durations import DurationBasis, requested_s

# Rendered in place of the lease id, which each admission swaps for its own: as long as an id
# (leases.ID_LENGTH), so Content-Length holds.
LEASE_STAND_IN = "gpuwatch-lease-id-here"
_STAND_IN = LEASE_STAND_IN.encode("ascii")
# Rendered in place of the slots an admission leaves, which each admission fills in: more digits
# than any count of slots, and found nowhere else in an answer (AdmittedTemplate checks).
SLOTS_STAND_IN = 918_273_645_546_372_819
_SLOTS = b"%d" % SLOTS_STAND_IN
# Distinct admitted answers (and held-back answers by request) kept per publication; requests
# naming ever new durations empty them.
_ADMITTED_ENTRIES = 1024

# Denials come in this many Retry-After variants; a response picks one at random, so clients
# told to come back do not all come back in the same second. A power of two: picked with
# `getrandbits(JITTER_BITS)`.
JITTER_BITS = 3
JITTER_VARIANTS = 1 << JITTER_BITS
# Jitters handed to `admit` (which scales its Retry-After by 1 + jitter x the configured ratio),
# spread evenly over [-1, 1].
JITTERS = tuple(-1.0 + (2 * k + 1) / JITTER_VARIANTS for k in range(JITTER_VARIANTS))


class AdmitRoute(enum.Enum):
    """An admit endpoint, valued by the status it denies with."""

    PLAIN = 503  # /v1/admit
    NGINX = 403  # /v1/admit/nginx: auth_request understands only 2xx, 401 and 403
    ENVOY = 429  # /v1/admit/envoy: ext_authz treats 5xx as the service failing


@dataclass(frozen=True, slots=True)
class AdmitAnswer:
    """An answer to an admit request: the response (one of the jitter variants when held back)."""

    response: Response
    tally: int  # AdmissionTally slot to count it in
    admission: Admission
    lease: Held | None = None  # the lease taken (admitted, not a dry run)


# A held-back answer under each route, in its JITTER_VARIANTS variants.
HeldAnswers = Mapping[AdmitRoute, tuple[AdmitAnswer, ...]]
# What an admit request asks: its class, the GPU it pins (None: any), the duration it says.
Asked = tuple[PriorityClass, int | None, float | None]


@dataclass(frozen=True, slots=True)
class Planned:
    """The duration an admitted job is planned with, s (None: unknown), and where it comes from."""

    seconds: float | None
    basis: str


def _admission_headers(
    admission: Admission, sequence: int, slots_left: int, *, leased: bool
) -> list[tuple[str, str]]:
    headers = [
        ("X-GPUWatch-State", admission.state.value),
        ("X-GPUWatch-Pressure", f"{admission.pressure:.4f}"),
        ("X-GPUWatch-Reason", admission.reason),
        ("X-GPUWatch-Slots", str(slots_left)),
        ("X-GPUWatch-Sequence", str(sequence)),
    ]
    if admission.admitted and admission.gpu is not None:
        headers.append(("X-GPUWatch-GPU", str(admission.gpu.index)))
        if leased:
            headers.append(("X-GPUWatch-Lease", LEASE_STAND_IN))
    if not admission.admitted and admission.retry_after_s is not None:
        headers.append(("Retry-After", str(admission.retry_after_s)))
    return headers


def _rendered(
    admission: Admission, sequence: int, slots_left: int, planned: Planned | None = None
) -> Response:
    """The answer; an admission that takes a lease carries LEASE_STAND_IN where its id goes."""
    lease = None if planned is None else (LEASE_STAND_IN, planned.seconds, planned.basis)
    body = json_bytes(admission_document(admission, sequence, slots_left, lease))
    headers = _admission_headers(admission, sequence, slots_left, leased=planned is not None)
    return build_response(200, JSON, body, headers)


@dataclass(frozen=True, slots=True)
class AdmittedTemplate:
    """An admitted answer rendered once with SLOTS_STAND_IN for its slots left, split around it.

    Every admission of a publication leaves a different count of slots, so each would otherwise
    be rendered anew; filling the count in (and Content-Length, which follows its digits) costs a
    few byte joins instead of a JSON encoding.
    """

    before_length: bytes  # the head up to Content-Length's field
    before_slots: bytes  # from the field after Content-Length to X-GPUWatch-Slots' value
    after_slots: bytes  # the rest of the head
    body: tuple[bytes, bytes]  # the body before and after the `slots` value

    @classmethod
    def of(cls, response: Response) -> AdmittedTemplate | None:
        """`response`, rendered with SLOTS_STAND_IN, as a template; None if it does not split cleanly."""
        body = response.body.split(_SLOTS)
        head = response.head.split(b"Content-Length: %d\r\n" % len(response.body))
        # Each field exactly once, so each split gives two parts.
        if len(body) != 2 or len(head) != 2:
            return None
        rest = head[1].split(b"X-GPUWatch-Slots: " + _SLOTS)
        if len(rest) != 2 or _SLOTS in head[0]:
            return None
        return cls(head[0], rest[0], rest[1], (body[0], body[1]))

    def filled(self, slots_left: int) -> Response:
        """The answer leaving `slots_left` slots."""
        slots = b"%d" % slots_left
        body = slots.join(self.body)
        head = b"%sContent-Length: %d\r\n%sX-GPUWatch-Slots: %s%s" % (
            self.before_length,
            len(body),
            self.before_slots,
            slots,
            self.after_slots,
        )
        return Response(200, head, body)


def with_lease(response: Response, lease_id: str) -> Response:
    """An admitted answer rendered with LEASE_STAND_IN, made out to `lease_id`."""
    lease = lease_id.encode("ascii")
    return Response(
        response.status, response.head.replace(_STAND_IN, lease), response.body.replace(_STAND_IN, lease)
    )


class Publication:
    """Everything served for one NodeDecision, and the leases taken against it.

    Immutable once published, except its caches of rendered answers, which only the event-loop
    thread fills. Without a book (files, tests) nothing is ever taken.
    """

    def __init__(
        self,
        decision: NodeDecision,
        source: str,
        book: LeaseBook | None = None,
    ) -> None:
        self.decision = decision
        self._source = source
        self._book = book
        self._counted = {gpu.index: gpu.slots_counted for gpu in decision.gpus}
        # The book's count of leases taken and ended when the decision was rendered: while it
        # stands, the rendered /v1/state is the book's too.
        self._changes = 0 if book is None else book.changes
        # Held-back answers by (class, pinned GPU, slots needed): per route, one ready AdmitAnswer
        # per jitter variant, so the commonest answer under a surge allocates nothing. Found by
        # the request's own (class, pinned GPU, duration said), one lookup before anything else.
        self._held: dict[tuple[PriorityClass, int | None, bool], HeldAnswers] = {}
        self._held_asked: dict[Asked, HeldAnswers] = {}
        # Admitted answers by (class, pinned GPU, chosen GPU, duration planned): a template each,
        # or the answers by slots left where one cannot be made.
        self._admitted: dict[tuple[object, ...], AdmittedTemplate | dict[int, Response]] = {}
        self._state_cache: tuple[tuple[tuple[int, ...], int], Response] | None = None
        self.state_body = json_bytes(state_document(decision, source, decision.admits))
        self.pressure_text = f"{min(1.0, max(0.0, decision.pressure)):.4f}"
        self._gpu_keys: Mapping[str, int] = {
            key: gpu.index for gpu in decision.gpus for key in (str(gpu.index), gpu.uuid.lower())
        }
        self._ready = {
            ready: json_response(
                200 if ready else 503,
                {
                    "ready": ready,
                    "state": decision.state.value,
                    "sentence": decision.sentence,
                    "sequence": decision.sequence,
                },
            )
            for ready in (True, False)
        }

    def gpu_index(self, text: str) -> int | None:
        """The index of the GPU `text` names (an index or a uuid, any case), else None."""
        return self._gpu_keys.get(text.lower())

    def taken(self) -> dict[int, int]:
        """Admissions taken on each GPU since the decision (by index)."""
        book = self._book
        if book is None:
            return {}
        totals = book.totals
        known = len(totals)
        return {
            index: (totals[index] if index < known else 0) - counted
            for index, counted in self._counted.items()
        }

    def planned(self, priority: PriorityClass, expected_s: float | None) -> tuple[Planned, bool]:
        """The duration a `priority` job is planned with (the request's, capped, else its class's).

        And whether that is longer than its class's plan: the slots were counted for jobs of the
        class's duration, and a longer one takes as many as it displaces (admission.admit).
        """
        class_s, class_basis = self.decision.job_plan(priority)
        if expected_s is None:
            return Planned(class_s, class_basis), False
        seconds = expected_s if self._book is None else requested_s(expected_s, self._book.config)
        return Planned(seconds, str(DurationBasis.REQUEST)), class_s is not None and seconds > class_s

    def admit_answer(  # noqa: PLR0913 - the request's parts, each its own parameter
        self,
        route: AdmitRoute,
        priority: PriorityClass,
        gpu: int | None,
        *,
        jitter: int = 0,
        take: bool = True,
        expected_s: float | None = None,
    ) -> AdmitAnswer:
        """The answer to an admit request, taking a lease (and its slots) when admitted and `take`.

        `jitter` picks one of the JITTER_VARIANTS Retry-After variants; `expected_s` is the
        duration the request says its job runs (None: its class's). Raises UnknownGpuError for
        a GPU the node lacks.
        """
        asked: Asked = (priority, gpu, expected_s)
        held = self._held_asked.get(asked)
        if held is not None:
            return held[route][jitter]
        planned, long = self.planned(priority, expected_s)
        held = self._held.get((priority, gpu, long))
        if held is not None:
            self._remember_held(asked, held)
            return held[route][jitter]
        taken = self.taken()
        admission = admit(self.decision, priority, gpu=gpu, jitter=JITTERS[0], taken=taken, long=long)
        if not admission.admitted:
            by_route = self._held_answers(admission, gpu, taken, long=long)
            self._held[priority, gpu, long] = by_route
            self._remember_held(asked, by_route)
            return by_route[route][jitter]
        chosen = admission.gpu
        lease = None
        if take and chosen is not None and self._book is not None:
            requested = planned.basis == DurationBasis.REQUEST
            lease = self._book.take(
                chosen.index, priority, planned.seconds, admission.cost, requested=requested
            )
        slots_left = admission.slots_left if take else admission.slots_left + admission.cost
        leased = planned if lease is not None else None
        response = self._admitted_response(admission, gpu, slots_left, leased)
        if lease is not None:
            response = with_lease(response, lease.id)
        return AdmitAnswer(response, tally_slot(priority, admitted=True), admission, lease)

    def _held_answers(
        self, held: Admission, gpu: int | None, taken: Mapping[int, int], *, long: bool
    ) -> HeldAnswers:
        """Every variant of a held-back answer under every status, rendered once.

        Held now, held until the next decision: slots taken since it only grow.
        """
        priority = held.priority
        variants = (
            held,
            *(admit(self.decision, priority, gpu=gpu, jitter=j, taken=taken, long=long) for j in JITTERS[1:]),
        )
        plain = tuple(_rendered(a, self.decision.sequence, 0) for a in variants)
        tally = tally_slot(priority, admitted=False)
        return {
            route: tuple(AdmitAnswer(with_status(r, route.value), tally, held) for r in plain)
            for route in AdmitRoute
        }

    def _admitted_response(
        self, admission: Admission, gpu: int | None, slots_left: int, leased: Planned | None
    ) -> Response:
        """The admitted answer leaving `slots_left`, from its template (made on first use)."""
        chosen = admission.gpu
        key = (admission.priority, gpu, None if chosen is None else chosen.index, leased)
        made = self._admitted.get(key)
        if made is None:
            if len(self._admitted) >= _ADMITTED_ENTRIES:
                self._admitted.clear()
            sequence = self.decision.sequence
            template = AdmittedTemplate.of(_rendered(admission, sequence, SLOTS_STAND_IN, leased))
            made = self._admitted[key] = {} if template is None else template
        if isinstance(made, AdmittedTemplate):
            return made.filled(slots_left)
        response = made.get(slots_left)
        if response is None:
            response = made[slots_left] = _rendered(admission, self.decision.sequence, slots_left, leased)
        return response

    def _remember_held(self, asked: Asked, held: HeldAnswers) -> None:
        """Find `held` by the request's own terms from now on (emptied when full: ever-new durations)."""
        if len(self._held_asked) >= _ADMITTED_ENTRIES:
            self._held_asked.clear()
        self._held_asked[asked] = held

    @property
    def state(self) -> Response:
        """/v1/state: the decision with its slots less those taken since, and the leases open now."""
        taken = self.taken()
        book = self._book
        key = (tuple(taken.values()), 0 if book is None else book.changes)
        cached = self._state_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        if book is None or (not any(key[0]) and book.changes == self._changes):
            body = self.state_body
        else:
            leases: dict[int, dict[PriorityClass, int]] = {}
            for (gpu, cls), count in book.open_counts().items():
                leases.setdefault(gpu, {})[cls] = count
            body = json_bytes(
                state_document(self.decision, self._source, self.decision.admits, taken, leases)
            )
        headers = [
            ("X-GPUWatch-State", self.decision.state.value),
            ("X-GPUWatch-Pressure", f"{self.decision.pressure:.4f}"),
            ("X-GPUWatch-Sequence", str(self.decision.sequence)),
        ]
        response = build_response(200, JSON, body, headers)
        self._state_cache = (key, response)
        return response

    def open_leases(self) -> dict[int, int] | None:
        """Each GPU's open leases now, of every class, by index (None: no lease book)."""
        book = self._book
        if book is None:
            return None
        totals: dict[int, int] = {}
        for (gpu, _), count in book.open_counts().items():
            totals[gpu] = totals.get(gpu, 0) + count
        return totals

    @property
    def ready(self) -> Response:
        """/readyz: 200 while some GPU has a free `default` slot now, else 503 (nothing is taken)."""
        taken = self.taken()
        decision = self.decision
        free = not decision.drained and any(
            gpu.free(PriorityClass.DEFAULT, taken.get(gpu.index, 0)) > 0 for gpu in decision.gpus
        )
        if not decision.gpus:
            free = PriorityClass.DEFAULT in decision.admits
        return self._ready[free]

    def agent_answers(self) -> tuple[bytes, Mapping[str, bytes]]:
        """The agent line for the node, and per GPU by index and lower-case uuid.

        Weights follow free `default` slots.
        """
        decision = self.decision
        taken = self.taken()
        frees = {
            gpu.index: 0 if decision.drained else gpu.free(PriorityClass.DEFAULT, taken.get(gpu.index, 0))
            for gpu in decision.gpus
        }
        node = agent_line(decision.state, sum(frees.values()), max(1, len(decision.gpus)))
        if not decision.gpus and PriorityClass.DEFAULT in decision.admits:
            node = agent_line(decision.state, 1, 1)
        lines = {}
        for gpu in decision.gpus:
            line = agent_line(gpu.state, frees[gpu.index], 1)
            lines[str(gpu.index)] = line
            lines[gpu.uuid.lower()] = line
        return node, lines
