"""The OpenAPI 3.1 description of the signal API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from gpuwatch import __version__
from gpuwatch.exposure.http.routes import (
    DRY_RUN_NO,
    DRY_RUN_YES,
    DURATION_PATTERN,
    ENVOY_METHODS,
    EXPECTED_HEADER,
    EXPECTED_PARAMETER,
    GPU_NAME_PATTERN,
)
from gpuwatch.exposure.leases import ENDINGS, ID_LENGTH, ID_PATTERN
from gpuwatch.policy.classes import ClassNames
from gpuwatch.policy.decision import PriorityClass, ThermalState
from gpuwatch.policy.drain import MAX_REASON_CHARS
from gpuwatch.policy.durations import DurationBasis

Json = dict[str, Any]

_NUMBER_OR_NULL: Json = {"type": ["number", "null"]}
_STATES = [state.value for state in ThermalState]
_CLASSES = [priority.value for priority in PriorityClass]
_DEFAULT_NAMES = ClassNames()
_SLOTS: Json = {
    "type": "object",
    "description": (
        "Jobs of each class that may start now (the slots less the admissions taken since the sample)."
    ),
    "required": _CLASSES,
    "properties": {name: {"type": "integer", "minimum": 0} for name in _CLASSES},
    "additionalProperties": False,
}
_SECONDS: Json = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "description": "Seconds: a positive decimal number, e.g. 10, 2.5 or 1e-3.",
}
_BASES = [basis.value for basis in DurationBasis]
_LEASE_ID: Json = {
    "type": "string",
    "pattern": ID_PATTERN,
    "description": f"A lease id: {ID_LENGTH} URL-safe characters from 128 random bits, opaque.",
}
_BY_CLASS_COUNT: Json = {
    "type": "object",
    "required": _CLASSES,
    "properties": {name: {"type": "integer", "minimum": 0} for name in _CLASSES},
    "additionalProperties": False,
}
_RETRY_AFTERS: Json = {
    "type": "object",
    "description": "Predicted seconds (not jittered) until each refused class is admitted again.",
    "propertyNames": {"enum": _CLASSES},
    "additionalProperties": {"type": "number"},
}


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_content(schema: str) -> Json:
    return {"application/json": {"schema": _ref("schemas", schema)}}


def _headers(*names: str) -> Json:
    return {name: _ref("headers", name) for name in names}


def _header(description: str, schema: Json) -> Json:
    return {"description": description, "schema": schema}


def _gpu_schema() -> Json:
    numbers = (
        "sample_age_s",
        "state_for_s",
        "margin_c",
        "memory_margin_c",
        "predicted_margin_c",
        "time_to_slowdown_s",
        "power_w",
        "power_limit_w",
        "sustainable_power_w",
        "utilization_ratio",
    )
    byte_counts = ("memory_used_bytes", "memory_total_bytes")
    properties: Json = {
        "index": {"type": "integer"},
        "uuid": {"type": "string"},
        "name": {"type": "string"},
        "state": {"type": "string", "enum": _STATES},
        "pressure": {"type": "number", "minimum": 0, "maximum": 1},
        "admits": {"type": "array", "items": {"type": "string", "enum": _CLASSES}},
        "slots": _SLOTS,
        "reserved": {
            "type": "integer",
            "minimum": 0,
            "description": (
                "Slots held against this GPU: its open leases at the decision plus the slots "
                "taken since (kept for clients that read it before leases)."
            ),
        },
        "leases": {
            **_BY_CLASS_COUNT,
            "description": "Open leases on this GPU at the decision, by class.",
        },
        "reasons": {"type": "array", "items": {"type": "string"}},
        "sentence": {"type": "string"},
        "clock_event_reasons": {"type": "array", "items": {"type": "string"}},
        "retry_after_s_by_class": _RETRY_AFTERS,
        "prediction_basis": {
            "type": "string",
            "enum": ["corrected", "model", "slope", "none"],
            "description": (
                "what the forecast rests on: corrected (the fitted model, corrected by the margin's "
                "measured trajectory or rate), model (the fitted model alone), slope (the recent "
                "readings' slope, before the model converges), none (too little history)"
            ),
        },
        "rejected_readings": {
            "type": "object",
            "description": "readings the forecast could not use and dropped, by reason",
            "additionalProperties": {"type": "integer", "minimum": 1},
        },
        "forecast_error_c": {
            "type": "object",
            "description": (
                "the margin the slots keep for the forecast's own errors, °C, by seconds ahead: the "
                "recent error quantile, or the prior on a board not yet checked; empty without a forecast"
            ),
            "additionalProperties": {"type": "number", "minimum": 0},
        },
        **dict.fromkeys(numbers, _NUMBER_OR_NULL),
        **{key: {"type": ["integer", "null"], "minimum": 0} for key in byte_counts},
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _state_schema() -> Json:
    properties: Json = {
        "schema_version": {"type": "integer", "const": 1},
        "source": {"type": "string"},
        "sequence": {"type": "integer", "description": "The snapshot the decision was made from."},
        "taken_at": {"type": "number", "description": "When the snapshot was taken, Unix seconds."},
        "sample_age_s": {**_NUMBER_OR_NULL, "description": "Age of the last good sample at decision time."},
        "state": {"type": "string", "enum": _STATES},
        "pressure": {"type": "number", "minimum": 0, "maximum": 1},
        "admits": {"type": "array", "items": {"type": "string", "enum": _CLASSES}},
        "slots": {**_SLOTS, "description": "The sum of the GPUs' slots, by class."},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "sentence": {"type": "string"},
        "retry_after_s_by_class": _RETRY_AFTERS,
        "expected_job_s": _job_plans_schema(),
        "gpus": {"type": "array", "items": _ref("schemas", "Gpu")},
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _job_plans_schema() -> Json:
    plan = {
        "type": "object",
        "required": ["seconds", "basis"],
        "properties": {
            "seconds": {
                **_NUMBER_OR_NULL,
                "description": "The duration planned with, s; null: unknown (a job lasts the horizon).",
            },
            "basis": {"type": "string", "enum": [b for b in _BASES if b != DurationBasis.REQUEST]},
        },
    }
    return {
        "type": "object",
        "description": (
            "Per class, the duration a job that says none is planned with and where it comes from: "
            "learned (a high quantile of the recent released leases), configured "
            "(policy.job_seconds), or unknown."
        ),
        "required": _CLASSES,
        "properties": dict.fromkeys(_CLASSES, plan),
        "additionalProperties": False,
    }


def _admission_schema() -> Json:
    gpu = {
        "type": ["object", "null"],
        "properties": {"index": {"type": "integer"}, "uuid": {"type": "string"}, "name": {"type": "string"}},
    }
    properties: Json = {
        "admitted": {"type": "boolean"},
        "class": {"type": "string", "enum": _CLASSES},
        "gpu": {**gpu, "description": "The GPU to start the job on; null when held back."},
        "state": {"type": "string", "enum": _STATES},
        "pressure": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
        "sentence": {"type": "string"},
        "retry_after_s": {"type": ["integer", "null"], "minimum": 1, "maximum": 120},
        "slots": {
            "type": "integer",
            "minimum": 0,
            "description": "Slots left for the class after this answer: the pinned GPU's, else the node's.",
        },
        "sequence": {"type": "integer"},
        "lease": {
            "oneOf": [_LEASE_ID, {"type": "null"}],
            "description": (
                "The lease this admission took: release it when the job ends (POST /v1/release). "
                "Null when held back or asked with dry_run."
            ),
        },
        "expected_s": {
            **_NUMBER_OR_NULL,
            "description": "The duration the lease was planned with, s; null: unknown, or no lease.",
        },
        "expected_basis": {
            "type": ["string", "null"],
            "enum": [*_BASES, None],
            "description": "Where expected_s comes from; null without a lease.",
        },
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _release_schema() -> Json:
    gpu = {
        "type": "object",
        "required": ["index", "uuid"],
        "properties": {"index": {"type": "integer"}, "uuid": {"type": ["string", "null"]}},
    }
    properties: Json = {
        "released": {"type": "boolean", "const": True},
        "lease": _LEASE_ID,
        "class": {"type": "string", "enum": _CLASSES},
        "gpu": {**gpu, "description": "The GPU the lease was on."},
        "held_s": {"type": "number", "minimum": 0, "description": "How long the lease was held, s."},
        "expected_s": {**_NUMBER_OR_NULL, "description": "The duration it was planned with, s."},
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _components(classes: ClassNames) -> Json:
    text = {"type": "string"}
    return {
        "schemas": {
            "State": _state_schema(),
            "Gpu": _gpu_schema(),
            "Admission": _admission_schema(),
            "Release": _release_schema(),
            "Readiness": {
                "type": "object",
                "required": ["ready", "state", "sentence", "sequence"],
                "properties": {"ready": {"type": "boolean"}, "state": text, "sentence": text, "sequence": {}},
            },
            "Health": {"type": "object", "properties": {"alive": {"type": "boolean"}}},
            "Drains": _drains_schema(),
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": text, "message": text},
            },
        },
        "parameters": _parameters(classes),
        "headers": _response_headers(),
    }


def _drains_schema() -> Json:
    entry = {
        "type": "object",
        "required": ["reason", "since"],
        "properties": {"reason": {"type": "string"}, "since": {"type": "number", "description": "Unix s"}},
    }
    return {
        "type": "object",
        "required": ["drains", "admin"],
        "properties": {
            "drains": {
                "type": "object",
                "required": ["node", "gpus"],
                "properties": {
                    "node": {"oneOf": [entry, {"type": "null"}]},
                    "gpus": {"type": "object", "additionalProperties": entry},
                },
            },
            "admin": {"type": "boolean", "description": "Whether POST and DELETE are served."},
        },
    }


def _drain_operations() -> Json:
    document = {"200": {"description": "The drains now in force.", "content": _json_content("Drains")}}
    refused = {
        "400": {
            "description": "An unknown or repeated parameter, or a bad reason.",
            "content": _json_content("Error"),
        },
        "403": {
            "description": "The admin API is off (--web.enable-admin-api), or no login is configured.",
            "content": _json_content("Error"),
        },
        "404": {"description": "This node has no such GPU.", "content": _json_content("Error")},
    }
    gpu = _ref("parameters", "gpu")
    reason = {
        "name": "reason",
        "in": "query",
        "description": "Why, shown in every answer while drained. Default: maintenance.",
        "schema": {"type": "string", "maxLength": MAX_REASON_CHARS},
    }
    return {
        "get": {"summary": "The maintenance drains in force", "responses": document},
        "post": {
            "summary": "Drain the node, or one GPU: hold all new work back until DELETE (admin API)",
            "parameters": [gpu, reason],
            "responses": {**document, **refused},
        },
        "delete": {
            "summary": "End every drain, or one GPU's (admin API)",
            "parameters": [gpu],
            "responses": {**document, **refused},
        },
    }


def _parameters(classes: ClassNames) -> Json:
    names = [*_CLASSES, *classes.aliases]  # the names this daemon accepts, aliases ([classes]) too
    return {
        "class": {
            "name": "class",
            "in": "query",
            "description": "Priority class (or an alias of one); overrides the X-GPUWatch-Class header. "
            f"Default: {classes.default}.",
            "schema": {"type": "string", "enum": names},
        },
        "gpu": {
            "name": "gpu",
            "in": "query",
            "description": "Pin the answer to this GPU (index or uuid); default: the coolest admissible.",
            "schema": {"type": "string", "pattern": GPU_NAME_PATTERN},
        },
        "dryRun": {
            "name": "dry_run",
            "in": "query",
            "description": "1 (or true): answer as if asking, but take no slot. Default: 0.",
            "schema": {"type": "string", "enum": [*DRY_RUN_YES, *DRY_RUN_NO]},
        },
        "classHeader": {
            "name": "X-GPUWatch-Class",
            "in": "header",
            "description": "Priority class (or an alias of one), when the query names none.",
            "schema": {"type": "string", "enum": names},
        },
        "expected": {
            "name": EXPECTED_PARAMETER,
            "in": "query",
            "description": (
                "How long the job runs, s: its lease is planned with it (capped by policy.max_job_s) "
                "and ends at that plus a grace if not released. Overrides the header. Default: the "
                "class's learned or configured duration, else unknown (the lease lasts the horizon)."
            ),
            "schema": _SECONDS,
        },
        "expectedHeader": {
            "name": EXPECTED_HEADER,
            "in": "header",
            "description": f"The same as {EXPECTED_PARAMETER}, for proxies; refused when malformed.",
            "schema": _SECONDS,
        },
        "lease": {
            "name": "lease",
            "in": "query",
            "required": True,
            "description": "The lease to end: the id its admission answered with.",
            "schema": _LEASE_ID,
        },
        "leasePath": {
            "name": "lease",
            "in": "path",
            "required": True,
            "description": "The lease to end: the id its admission answered with.",
            "schema": _LEASE_ID,
        },
    }


def _response_headers() -> Json:
    text = {"type": "string"}
    return {
        "X-GPUWatch-State": _header("Thermal state behind the answer.", {"type": "string", "enum": _STATES}),
        "X-GPUWatch-Pressure": _header("Pressure, 0 (cool) to 1 (at the limit), 4 decimals.", text),
        "X-GPUWatch-Reason": _header("Machine-readable reason code of the answer.", text),
        "X-GPUWatch-Slots": _header(
            "Slots left for the class after this answer (the pinned GPU's, else the node's).",
            {"type": "integer", "minimum": 0},
        ),
        "X-GPUWatch-GPU": _header("Index of the GPU to use; only when admitted.", {"type": "integer"}),
        "X-GPUWatch-Lease": _header(
            "The lease the admission took (not with dry_run): release it when the job ends, or "
            "pass it upstream to the application that will.",
            _LEASE_ID,
        ),
        "X-GPUWatch-Sequence": _header("Sequence of the snapshot decided on.", {"type": "integer"}),
        "Retry-After": _header("Whole seconds (1-120, jittered) until asking again.", {"type": "integer"}),
    }


def _admit_operation(summary: str, deny_status: str, deny_about: str) -> Json:
    admit_headers = _headers(
        "X-GPUWatch-State",
        "X-GPUWatch-Pressure",
        "X-GPUWatch-Reason",
        "X-GPUWatch-Slots",
        "X-GPUWatch-Sequence",
    )
    return {
        "get": {
            "summary": summary,
            "parameters": [
                _ref("parameters", "class"),
                _ref("parameters", "gpu"),
                _ref("parameters", "dryRun"),
                _ref("parameters", "expected"),
                _ref("parameters", "classHeader"),
                _ref("parameters", "expectedHeader"),
            ],
            "responses": {
                "200": {
                    "description": (
                        "Admitted: a lease is taken on the GPU named (unless dry_run); start the job "
                        "there and release the lease when it ends."
                    ),
                    "headers": {**admit_headers, **_headers("X-GPUWatch-GPU", "X-GPUWatch-Lease")},
                    "content": _json_content("Admission"),
                    "links": {
                        "Release": {
                            "operationId": "release",
                            "parameters": {"lease": "$response.body#/lease"},
                            "description": "End the lease when the job ends.",
                        },
                        "EndLease": {
                            "operationId": "endLease",
                            "parameters": {"lease": "$response.body#/lease"},
                            "description": "The same, as DELETE.",
                        },
                    },
                },
                deny_status: {
                    "description": deny_about,
                    "headers": {**admit_headers, **_headers("Retry-After")},
                    "content": _json_content("Admission"),
                },
                "400": {
                    "description": (
                        "Unknown class, a malformed gpu, a dry_run that is not 1 or 0, an expected_s "
                        "(or its header) that is not a number of seconds, or a repeated parameter."
                    ),
                    "content": _json_content("Error"),
                },
                "404": {"description": "This node has no such GPU.", "content": _json_content("Error")},
            },
        }
    }


def _metrics_operation() -> Json:
    text = {"schema": {"type": "string"}}
    return _plain_operation(
        "Prometheus metrics (gzip when accepted); the path is --web.telemetry-path",
        {
            "200": {
                "description": "Prometheus text format 0.0.4.",
                "content": {"text/plain; version=0.0.4; charset=utf-8": text},
            },
            "503": {
                "description": "More scrapes in progress than --web.max-requests allows.",
                "content": {"text/plain": text},
            },
        },
    )


# Envoy's ext_authz checks with the original request's method (and path, below this one).
_EVERY_METHOD = tuple(method.decode().lower() for method in ENVOY_METHODS)


def _any_method(path_item: Json) -> Json:
    """`path_item`'s GET operation under every method OpenAPI can name."""
    return dict.fromkeys(_EVERY_METHOD, path_item["get"])


def _release_responses() -> Json:
    return {
        "200": {
            "description": "The lease ended: its slot is free for the next decision.",
            "content": _json_content("Release"),
        },
        "400": {
            "description": (
                "No lease named (missing_lease), an id that cannot be one gpuwatch hands out "
                "(bad_lease), or a repeated parameter."
            ),
            "content": _json_content("Error"),
        },
        "404": {
            "description": (
                "No such lease is open (unknown_lease): never handed out, already released, past its "
                "deadline, or ended because its GPU went FAILED or UNKNOWN. The job's slot is not "
                "held any more; there is nothing to retry."
            ),
            "content": _json_content("Error"),
        },
    }


def _release_operations() -> Json:
    """POST /v1/release?lease= and DELETE /v1/leases/{lease}: the job ended."""
    ended = f"How a lease ends, as gpuwatch_leases_ended_total counts it: {', '.join(ENDINGS)}."
    return {
        "/v1/release": {
            "post": {
                "operationId": "release",
                "summary": "The job ended: end its lease (a body, if any, is not read)",
                "description": ended,
                "parameters": [_ref("parameters", "lease")],
                "responses": _release_responses(),
            }
        },
        "/v1/leases/{lease}": {
            "delete": {
                "operationId": "endLease",
                "summary": "The job ended: end its lease (the same as POST /v1/release)",
                "description": ended,
                "parameters": [_ref("parameters", "leasePath")],
                "responses": _release_responses(),
            }
        },
    }


def _plain_operation(summary: str, responses: Json) -> Json:
    return {"get": {"summary": summary, "responses": responses}}


def openapi_document(telemetry_path: str = "/metrics", classes: ClassNames = _DEFAULT_NAMES) -> Json:
    """The whole document; every route also answers HEAD with the GET headers."""
    held = "Held back: do not start the job; ask again after Retry-After seconds."
    paths = {
        "/v1/state": _plain_operation(
            "Node and per-GPU thermal state",
            {"200": {"description": "The latest decision.", "content": _json_content("State")}},
        ),
        "/v1/admit": _admit_operation("May one more job of this class start?", "503", held),
        "/v1/admit/nginx": _admit_operation("Admit, for nginx auth_request", "403", held),
        "/v1/admit/envoy": _any_method(_admit_operation("Admit, for Envoy ext_authz", "429", held)),
        **_release_operations(),
        "/v1/drain": _drain_operations(),
        "/healthz": _plain_operation(
            "Liveness", {"200": {"description": "The daemon is alive.", "content": _json_content("Health")}}
        ),
        "/readyz": _plain_operation(
            "Readiness: some GPU has a free `default` slot now (nothing is taken)",
            {
                "200": {"description": "Ready.", "content": _json_content("Readiness")},
                "503": {"description": "Class default is held back.", "content": _json_content("Readiness")},
            },
        ),
        "/": _plain_operation(
            "Landing page", {"200": {"description": "HTML.", "content": {"text/html": {}}}}
        ),
        "/openapi.json": _plain_operation(
            "This document", {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}}}
        ),
        telemetry_path: _metrics_operation(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpuwatch thermal backpressure API",
            "version": __version__,
            "description": "Ask before starting a GPU job; be held back before GPUs reach thermal slowdown.",
        },
        "paths": paths,
        "components": _components(classes),
    }
