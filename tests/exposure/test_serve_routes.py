"""The routes of DESIGN §3: /v1/state, /v1/admit and its adapters, /readyz, /healthz, /, /openapi.json."""

from __future__ import annotations

import re

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from serve_helpers import ServerThread, get, gpu, node

from gpuwatch.exposure.landing import ACTIONS, ROUTES
from gpuwatch.policy.decision import Slots, ThermalState
from gpuwatch.policy.model.prediction import Basis

OK, ELEVATED, HOT, CRITICAL = ThermalState.OK, ThermalState.ELEVATED, ThermalState.HOT, ThermalState.CRITICAL
ADMIT_PATHS = ("/v1/admit", "/v1/admit/nginx", "/v1/admit/envoy")
DENY_STATUS = {"/v1/admit": 503, "/v1/admit/nginx": 403, "/v1/admit/envoy": 429}
NONE = Slots(0, 0, 0)


@pytest.fixture
def cool():
    """Three cool GPUs; GPU 1 is the coolest."""
    with ServerThread(node(gpu(0, pressure=0.3), gpu(1, pressure=0.05), gpu(2, pressure=0.2))) as running:
        yield running


@pytest.fixture
def hot():
    """Two GPUs with no slot left for any class."""
    with ServerThread(
        node(gpu(0, HOT, pressure=0.95, slots=NONE), gpu(1, HOT, pressure=0.98, slots=NONE))
    ) as running:
        yield running


class TestState:
    """/v1/state carries the node's and every GPU's decision."""

    def test_state_document_mirrors_the_decision(self):
        decision = node(
            gpu(
                0, pressure=0.25, predicted_margin_c=22.5, time_to_slowdown_s=None, sustainable_power_w=640.0
            ),
            gpu(1, ELEVATED, pressure=0.61, clock_event_reasons=("sw_power_cap",), memory_margin_c=30.0),
            sequence=42,
        )
        with ServerThread(decision) as server:
            answer = get(server.http_port, "/v1/state")
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-gpuwatch-sequence"] == "42"
        state = answer.json()
        assert state["schema_version"] == 1
        assert (state["state"], state["pressure"], state["sequence"]) == ("elevated", 0.61, 42)
        assert state["reasons"] == ["test_elevated"]
        assert state["admits"] == ["critical", "default", "sheddable"]  # GPU 0 has slots for all
        assert state["slots"] == {"critical": 10 + 6, "default": 9 + 5, "sheddable": 8}
        assert state["retry_after_s_by_class"] == {}
        first, second = state["gpus"]
        assert (first["slots"], first["reserved"]) == ({"critical": 10, "default": 9, "sheddable": 8}, 0)
        assert second["slots"] == {"critical": 6, "default": 5, "sheddable": 0}
        assert first["predicted_margin_c"] == 22.5
        assert first["sustainable_power_w"] == 640.0
        assert first["time_to_slowdown_s"] is None
        assert second["state"] == "elevated"
        assert second["admits"] == ["critical", "default"]
        assert second["clock_event_reasons"] == ["sw_power_cap"]
        assert second["memory_margin_c"] == 30.0
        assert second["uuid"] == "GPU-test-0001"

    def test_a_new_decision_shows_at_once(self, cool):
        cool.board.publish(node(gpu(0, HOT, pressure=0.9), sequence=7))
        assert get(cool.http_port, "/v1/state").json()["state"] == "hot"
        assert get(cool.http_port, "/v1/admit").headers["x-gpuwatch-sequence"] == "7"


class TestAdmit:
    """/v1/admit: 200 with the GPU to use, else a denial with a jittered Retry-After."""

    def test_admits_on_the_coolest_gpu(self, cool):
        answer = get(cool.http_port, "/v1/admit?class=default")
        assert answer.status == 200
        assert answer.json()["gpu"]["index"] == 1
        assert answer.headers["x-gpuwatch-gpu"] == "1"
        assert answer.headers["x-gpuwatch-state"] == "ok"
        assert re.fullmatch(r"[01]\.\d{4}", answer.headers["x-gpuwatch-pressure"])
        assert answer.headers["x-gpuwatch-reason"]
        assert "retry-after" not in answer.headers

    @pytest.mark.parametrize("pin", ["2", "GPU-test-0002", "gpu-TEST-0002"])
    def test_gpu_parameter_pins_the_answer(self, cool, pin):
        answer = get(cool.http_port, f"/v1/admit?gpu={pin}")
        assert answer.status == 200
        assert answer.json()["gpu"]["uuid"] == "GPU-test-0002"

    def test_pinning_a_hot_gpu_denies_although_others_admit(self):
        with ServerThread(node(gpu(0), gpu(1, HOT, pressure=0.9))) as server:
            assert get(server.http_port, "/v1/admit?gpu=0").status == 200
            denied = get(server.http_port, "/v1/admit?gpu=1")
        assert denied.status == 503
        assert denied.json()["gpu"] is None

    @pytest.mark.parametrize("path", ADMIT_PATHS)
    def test_denials_carry_the_route_status_and_retry_after(self, hot, path):
        answer = get(hot.http_port, f"{path}?class=default")
        assert answer.status == DENY_STATUS[path]
        assert 1 <= int(answer.headers["retry-after"]) <= 120
        assert answer.json()["retry_after_s"] == int(answer.headers["retry-after"])
        assert answer.headers["x-gpuwatch-state"] == "hot"
        assert "x-gpuwatch-gpu" not in answer.headers

    @pytest.mark.parametrize("path", ADMIT_PATHS)
    def test_adapters_admit_with_200(self, cool, path):
        assert get(cool.http_port, path).status == 200

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/v1/admit/envoy"),
            ("POST", "/v1/admit/envoy/v1/images/generations"),
            ("PUT", "/v1/admit/envoy/x?y=1"),
        ],
    )
    def test_envoy_checks_keep_the_original_method_and_path(self, cool, hot, method, path):
        """Envoy's ext_authz forwards the client's method and appends its path to the prefix."""
        body = b"{}" if method == "POST" else None
        admitted = get(cool.http_port, path, method=method, body=body)
        denied = get(hot.http_port, path, {"X-GPUWatch-Class": "default"}, method=method, body=body)
        assert admitted.status == 200
        assert admitted.headers["x-gpuwatch-gpu"] == "1"
        assert denied.status == 429
        assert 1 <= int(denied.headers["retry-after"]) <= 120

    @pytest.mark.parametrize("method", ["QUERY", "CONNECT", "PROPFIND"])
    def test_envoy_refuses_methods_no_http_api_takes(self, cool, method):
        answer = get(cool.http_port, "/v1/admit/envoy", method=method)
        assert answer.status == 405
        assert "POST" in answer.headers["allow"]
        assert method not in answer.headers["allow"]

    def test_a_bad_class_header_is_refused_even_when_the_query_names_a_class(self, cool):
        answer = get(cool.http_port, "/v1/admit?class=critical", {"X-GPUWatch-Class": "gold"})
        assert answer.status == 400
        assert answer.json()["error"] == "unknown_class"

    def test_other_routes_still_refuse_other_methods(self, cool):
        assert get(cool.http_port, "/v1/admit", method="POST").status == 405
        assert get(cool.http_port, "/v1/admit/envoyx", method="GET").status == 404

    def test_retry_after_is_jittered_per_response(self, hot):
        seen = {get(hot.http_port, "/v1/admit").headers["retry-after"] for _ in range(64)}
        assert len(seen) >= 2

    @pytest.mark.parametrize(
        ("slots", "expected"),
        [
            (Slots(3, 2, 1), {"critical": 200, "default": 200, "sheddable": 200}),
            (Slots(3, 2, 0), {"critical": 200, "default": 200, "sheddable": 503}),
            (Slots(3, 0, 0), {"critical": 200, "default": 503, "sheddable": 503}),
            (NONE, {"critical": 503, "default": 503, "sheddable": 503}),
        ],
    )
    def test_each_class_is_admitted_on_its_own_slots(self, slots, expected):
        with ServerThread(node(gpu(0, slots=slots))) as server:
            got = {c: get(server.http_port, f"/v1/admit?class={c}&dry_run=1").status for c in expected}
        assert got == expected

    def test_a_burst_gets_exactly_the_slots_offered(self):
        with ServerThread(node(gpu(0, slots=Slots(3, 3, 3)), gpu(1, slots=Slots(2, 2, 2)))) as server:
            answers = [get(server.http_port, "/v1/admit?class=sheddable") for _ in range(12)]
            state = get(server.http_port, "/v1/state").json()
        admitted = [a for a in answers if a.status == 200]
        assert len(admitted) == 5
        assert [a.headers["x-gpuwatch-slots"] for a in admitted] == ["4", "3", "2", "1", "0"]
        assert {a.headers["x-gpuwatch-gpu"] for a in admitted} == {"0", "1"}
        assert all(a.headers["x-gpuwatch-reason"] == "slots_taken" for a in answers[5:])
        assert state["slots"] == {"critical": 0, "default": 0, "sheddable": 0}
        assert [g["reserved"] for g in state["gpus"]] == [3, 2]

    def test_dry_run_takes_nothing(self, cool):
        before = get(cool.http_port, "/v1/state").json()["slots"]
        answers = [get(cool.http_port, "/v1/admit?class=default&dry_run=1") for _ in range(5)]
        assert {a.status for a in answers} == {200}
        assert {a.headers["x-gpuwatch-slots"] for a in answers} == {str(before["default"])}
        assert get(cool.http_port, "/v1/state").json()["slots"] == before
        assert cool.board.tally.snapshot()["admit", "default"] == 0  # a dry run is not counted

    @pytest.mark.parametrize("spelling", ["maybe", "TRUE", "%201"])
    def test_a_bad_dry_run_is_refused(self, cool, spelling):
        answer = get(cool.http_port, f"/v1/admit?dry_run={spelling}")
        assert answer.status == 400
        assert answer.json()["error"] == "bad_dry_run"

    def test_class_comes_from_the_header_when_the_query_names_none(self):
        with ServerThread(node(gpu(0, HOT, pressure=0.9, slots=Slots(1, 0, 0)))) as server:
            by_header = get(server.http_port, "/v1/admit", {"X-GPUWatch-Class": "critical"})
            query_wins = get(server.http_port, "/v1/admit?class=default", {"X-GPUWatch-Class": "critical"})
            neither = get(server.http_port, "/v1/admit")
        assert by_header.status == 200
        assert by_header.json()["class"] == "critical"
        assert query_wins.status == 503  # the one critical slot is taken now
        assert neither.json()["class"] == "default"

    @pytest.mark.parametrize(
        ("path", "headers", "code"),
        [
            ("/v1/admit?class=gold", {}, "unknown_class"),
            ("/v1/admit", {"X-GPUWatch-Class": "gold"}, "unknown_class"),
            ("/v1/admit/envoy?gpu=GPU-nope", {}, "bad_gpu"),
            ("/v1/admit?gpu=0%0A", {}, "bad_gpu"),
            ("/v1/admit?gpu=-1", {}, "bad_gpu"),
            ("/v1/admit?class=default&class=critical", {}, "repeated_parameter"),
        ],
    )
    def test_bad_requests_get_400_with_a_clear_error(self, cool, path, headers, code):
        answer = get(cool.http_port, path, headers)
        assert answer.status == 400
        assert answer.json()["error"] == code
        assert answer.json()["message"]

    @pytest.mark.parametrize("name", ["9", "GPU-00000000-0000-0000-0000-000000000000"])
    def test_a_well_formed_gpu_this_node_lacks_is_404(self, cool, name):
        answer = get(cool.http_port, f"/v1/admit/nginx?gpu={name}")
        assert answer.status == 404
        assert answer.json()["error"] == "unknown_gpu"
        assert name in answer.json()["message"]

    def test_bad_class_message_names_the_valid_classes(self, cool):
        message = get(cool.http_port, "/v1/admit?class=gold").json()["message"]
        assert all(name in message for name in ("critical", "default", "sheddable"))

    def test_admissions_are_counted_per_decision_and_class(self):
        with ServerThread(node(gpu(0, ELEVATED, pressure=0.5, slots=Slots(2, 1, 0)))) as server:
            for _ in range(3):
                get(server.http_port, "/v1/admit?class=sheddable")
            get(server.http_port, "/v1/admit/nginx?class=default")
            get(server.http_port, "/v1/admit?class=default")
            get(server.http_port, "/v1/admit?class=critical")
            get(server.http_port, "/v1/admit?class=gold")
            counts = server.board.tally.snapshot()
        assert (counts["admit", "sheddable"], counts["deny", "sheddable"]) == (0, 3)
        assert (counts["admit", "default"], counts["deny", "default"]) == (1, 1)  # one slot, then taken
        assert counts["admit", "critical"] == 1  # the one critical slot the default job left
        assert sum(counts.values()) == 6

    def test_only_admissions_change_the_state(self, cool):
        before = get(cool.http_port, "/v1/state").body
        for path in ("/v1/admit?dry_run=1", "/v1/admit/nginx?gpu=0&dry_run=true", "/readyz", "/", "/metrics"):
            for _ in range(5):
                get(cool.http_port, path)
        assert get(cool.http_port, "/v1/state").body == before
        get(cool.http_port, "/v1/admit/envoy?class=sheddable")
        assert get(cool.http_port, "/v1/state").body != before


class TestProbesAndDocs:
    """/healthz, /readyz, the landing page and the OpenAPI document."""

    def test_healthz_is_200(self, hot):
        assert get(hot.http_port, "/healthz").status == 200

    def test_readyz_follows_whether_default_is_admitted(self, cool, hot):
        assert get(cool.http_port, "/readyz").json()["ready"] is True
        assert get(cool.http_port, "/readyz").status == 200
        assert get(hot.http_port, "/readyz").status == 503
        assert get(hot.http_port, "/readyz").json()["state"] == "hot"

    def test_landing_page_links_every_route(self, cool):
        page = get(cool.http_port, "/")
        assert page.headers["content-type"].startswith("text/html")
        for path, _ in ROUTES:
            assert f'href="{path.replace("&", "&amp;")}"'.encode() in page.body
            assert get(cool.http_port, path).status in {200, 503}

    def test_landing_page_lists_the_release_routes_with_their_methods(self, cool):
        page = get(cool.http_port, "/").body.decode()
        assert [(m, p) for m, p, _ in ACTIONS] == [
            ("POST", "/v1/release?lease={lease}"),
            ("DELETE", "/v1/leases/{lease}"),
        ]
        for method, path, _ in ACTIONS:
            assert f"<code>{method} {path}</code>" in page
            assert f'href="{path}"' not in page  # a click would GET it: 405

    def test_openapi_is_valid_and_describes_every_route(self, cool):
        document = get(cool.http_port, "/openapi.json").json()
        validate(document)
        routes = {path.split("?")[0] for path, _ in ROUTES} | {"/"}
        actions = {path.split("?")[0]: method.lower() for method, path, _ in ACTIONS}
        assert set(document["paths"]) == routes | set(actions)
        for path, method in actions.items():
            assert set(document["paths"][path]) == {method}
            assert set(document["paths"][path][method]["responses"]) == {"200", "400", "404"}
        admit = document["paths"]["/v1/admit"]["get"]
        assert {"200", "503", "400"} <= set(admit["responses"])
        assert "Retry-After" in admit["responses"]["503"]["headers"]
        assert "X-GPUWatch-Lease" in admit["responses"]["200"]["headers"]
        parameters = {ref["$ref"].rsplit("/", 1)[1] for ref in admit["parameters"]}
        assert {"expected", "expectedHeader"} <= parameters
        admission = document["components"]["schemas"]["Admission"]["properties"]
        assert {"lease", "expected_s", "expected_basis"} <= set(admission)
        state = document["components"]["schemas"]["State"]["properties"]
        assert set(state["expected_job_s"]["properties"]) == {"critical", "default", "sheddable"}
        assert {"403"} <= set(document["paths"]["/v1/admit/nginx"]["get"]["responses"])
        assert {"429"} <= set(document["paths"]["/v1/admit/envoy"]["get"]["responses"])
        gpu_schema = document["components"]["schemas"]["Gpu"]["properties"]
        assert gpu_schema["prediction_basis"]["enum"] == [str(basis) for basis in Basis]
        assert "corrected" in gpu_schema["prediction_basis"]["description"]
        assert "rejected_readings" in gpu_schema
        assert set(gpu_schema["leases"]["properties"]) == {"critical", "default", "sheddable"}

    @pytest.mark.parametrize(
        ("path", "schema"),
        [
            ("/v1/state", "State"),
            ("/v1/admit?class=critical", "Admission"),
            ("/v1/admit?class=default", "Admission"),
            ("/v1/admit/envoy?gpu=9", "Error"),
            ("/readyz", "Readiness"),
            ("/healthz", "Health"),
        ],
    )
    def test_answers_match_their_schemas(self, path, schema):
        with ServerThread(node(gpu(0, ELEVATED, pressure=0.6), gpu(1, HOT, pressure=0.9))) as server:
            document = get(server.http_port, "/openapi.json").json()
            answer = get(server.http_port, path).json()
        root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
        OAS31Validator(root).validate(answer)
