"""gpuwatch.client against a scripted stand-in and real daemons: caching, Retry-After, fallbacks, leases."""

from __future__ import annotations

import json
import logging
import re
import threading
import time

import pytest
from int_procs import free_port
from int_stub import LEASE, Reply, admit_reply, held_back_reply, not_open_reply, release_reply

from gpuwatch.client import (
    NOT_OPEN,
    NOT_TOLD,
    RELEASED,
    GpuwatchClient,
    GpuwatchError,
    GpuwatchHeldBack,
    GpuwatchRequestError,
)
from gpuwatch.exposure.leases import well_formed
from gpuwatch.sources.clock import ManualClock


def client_for(url: str, *, fail_open: bool = False, max_age_s: float = 1.0, timeout_s: float = 1.0):
    clock = ManualClock()
    return GpuwatchClient(
        url, fail_open=fail_open, max_age_s=max_age_s, timeout_s=timeout_s, clock=clock
    ), clock


class TestAdmitAnswers:
    """An answer from gpuwatch becomes an AdmitResult with the GPU, state, pressure and reason."""

    def test_admitted_names_the_gpu_and_sends_class_and_gpu(self, stub):
        stub.replies["/v1/admit"] = admit_reply(gpu=3, state="elevated", pressure=0.42)
        client, _ = client_for(stub.url)
        result = client.admit("critical", gpu=3)
        assert (result.admitted, result.gpu, result.state, result.pressure) == (True, 3, "elevated", 0.42)
        assert not result.fallback
        assert not result.from_cache
        assert stub.queries == ["/v1/admit?class=critical&gpu=3"]

    def test_held_back_carries_retry_after_state_and_reason(self, stub):
        stub.replies["/v1/admit"] = held_back_reply(retry_after="7", state="critical", reason="hw_slowdown")
        client, _ = client_for(stub.url)
        result = client.admit()
        assert not result.admitted
        assert (result.retry_after_s, result.state, result.reason) == (7.0, "critical", "hw_slowdown")
        assert not result.fallback

    def test_unknown_class_is_the_callers_error_even_when_gpuwatch_is_down(self):
        client, _ = client_for(f"http://127.0.0.1:{free_port()}", fail_open=True)
        with pytest.raises(GpuwatchRequestError, match="unknown priority class 'gold'"):
            client.admit("gold")

    def test_class_names_are_normalised_before_asking(self, stub):
        stub.replies["/v1/admit"] = held_back_reply(retry_after="5")
        client, _ = client_for(stub.url)
        client.admit(" Critical ")
        assert client.admit("critical").from_cache  # the same question, held back
        assert stub.queries == ["/v1/admit?class=critical"]

    @pytest.mark.parametrize(
        ("status", "body"),
        [
            (404, b'{"error": "unknown_gpu", "message": "this node has no GPU 9"}'),
            (400, b'{"error": "bad_gpu", "message": "gpu \'x\' is not a GPU index or uuid"}'),
        ],
    )
    def test_gpuwatchs_refusal_raises_with_its_message(self, stub, status, body):
        stub.replies["/v1/admit"] = Reply(status, {"X-GPUWatch-State": "ok"}, body)
        client, _ = client_for(stub.url, fail_open=True)
        message = json.loads(body)["message"]
        with pytest.raises(GpuwatchRequestError, match=re.escape(message)):
            client.admit(gpu=9)

    def test_a_proxys_404_is_not_taken_for_gpuwatchs_refusal(self, stub):
        stub.replies["/v1/admit"] = Reply(404, {}, b"<html>404 Not Found</html>")
        client, _ = client_for(stub.url, fail_open=True)
        result = client.admit(gpu=9)
        assert result.fallback
        assert result.admitted
        assert "HTTP 404" in result.reason


class TestCaching:
    """One admission per job: an admitted answer is never reused; after a 503 the client waits Retry-After."""

    def test_an_admission_is_never_reused_for_another_job(self, stub):
        stub.replies["/v1/admit"] = admit_reply()
        client, _ = client_for(stub.url, max_age_s=5.0)
        answers = [client.admit() for _ in range(3)]
        assert [(a.admitted, a.from_cache) for a in answers] == [(True, False)] * 3
        assert stub.hits["/v1/admit"] == 3  # each job took its own slot

    def test_no_request_during_retry_after_and_answers_held_back_from_cache(self, stub):
        stub.replies["/v1/admit"] = held_back_reply(retry_after="5")
        client, clock = client_for(stub.url, max_age_s=0.5)
        client.admit()
        stub.replies["/v1/admit"] = admit_reply()  # the node has cooled, but Retry-After still holds
        clock.advance(4.0)
        cached = client.admit()
        assert (cached.admitted, cached.from_cache) == (False, True)
        assert cached.retry_after_s == pytest.approx(1.0)
        assert stub.hits["/v1/admit"] == 1
        clock.advance(1.1)
        assert client.admit().admitted
        assert stub.hits["/v1/admit"] == 2

    def test_classes_and_gpus_are_cached_apart(self, stub):
        stub.replies["/v1/admit"] = admit_reply()
        client, _ = client_for(stub.url)
        client.admit("default")
        client.admit("critical")
        client.admit("default", gpu=1)
        assert stub.hits["/v1/admit"] == 3

    def test_a_failure_to_ask_is_reused_for_max_age(self):
        client, clock = client_for(f"http://127.0.0.1:{free_port()}", fail_open=False, max_age_s=0.5)
        assert client.admit().fallback
        clock.advance(0.4)
        assert client.admit().from_cache  # a dead daemon is not asked again at once
        clock.advance(0.2)
        assert not client.admit().from_cache


class TestFallback:
    """When gpuwatch gives no usable answer, the caller's fail_open decides, and the result says so."""

    @pytest.mark.parametrize("fail_open", [True, False])
    def test_unreachable_daemon_answers_the_callers_choice(self, fail_open):
        client, _ = client_for(f"http://127.0.0.1:{free_port()}", fail_open=fail_open)
        result = client.admit()
        assert result.fallback
        assert result.admitted is fail_open
        assert result.state is None
        assert "connection refused" in result.reason

    @pytest.mark.parametrize(
        "reply",
        [
            Reply(500, {}, b"Internal Server Error"),
            Reply(503, {"Retry-After": "1"}, b"<html>proxy: no upstream</html>"),  # not gpuwatch's 503
            Reply(200, {"X-GPUWatch-State": "ok"}, b"not json"),
            Reply(200, {"X-GPUWatch-State": "ok"}, b'{"gpu": null}'),
        ],
        ids=["http-500", "503-without-gpuwatch-headers", "body-not-json", "no-gpu-named"],
    )
    def test_broken_answers_fall_back(self, stub, reply):
        stub.replies["/v1/admit"] = reply
        client, _ = client_for(stub.url, fail_open=False)
        result = client.admit()
        assert (result.admitted, result.fallback) == (False, True)
        assert result.retry_after_s is not None

    def test_hung_daemon_falls_back_after_the_timeout(self, stub):
        stub.replies["/v1/admit"] = Reply(200, {}, b"{}", delay_s=2.0)
        client, _ = client_for(stub.url, fail_open=True, timeout_s=0.3)
        started = time.monotonic()
        result = client.admit()
        assert time.monotonic() - started < 1.5
        assert (result.admitted, result.fallback) == (True, True)
        assert "did not answer within 0.3 s" in result.reason

    def test_fallback_is_cached_so_a_dead_daemon_is_not_hammered(self, stub):
        stub.replies["/v1/admit"] = Reply(500, {}, b"")
        client, clock = client_for(stub.url, max_age_s=2.0)
        client.admit()
        clock.advance(1.0)
        again = client.admit()
        assert (again.fallback, again.from_cache) == (True, True)
        assert stub.hits["/v1/admit"] == 1


def admit_from_threads(client: GpuwatchClient, count: int) -> list:
    """`count` threads released at once, each calling `client.admit()`; their answers."""
    results = []
    barrier = threading.Barrier(count)

    def ask():
        barrier.wait()
        results.append(client.admit())

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


class TestThreads:
    """Concurrent callers share a held-back answer; each admission is asked for on its own."""

    def test_twenty_threads_admitted_twenty_requests(self, stub):
        stub.replies["/v1/admit"] = admit_reply(gpu=5)
        results = admit_from_threads(GpuwatchClient(stub.url, fail_open=False, max_age_s=5.0), 20)
        assert [(result.gpu, result.from_cache) for result in results] == [(5, False)] * 20
        assert stub.hits["/v1/admit"] == 20

    def test_twenty_threads_held_back_one_request(self, stub):
        stub.replies["/v1/admit"] = Reply(**{**held_back_reply(retry_after="5").__dict__, "delay_s": 0.3})
        results = admit_from_threads(GpuwatchClient(stub.url, fail_open=False, max_age_s=5.0), 20)
        assert [result.admitted for result in results] == [False] * 20
        assert stub.hits["/v1/admit"] == 1


class TestState:
    """state() returns /v1/state, cached for max_age_s, and raises when it cannot."""

    def test_document_cached_and_copied(self, stub):
        stub.replies["/v1/state"] = Reply(200, {}, b'{"state": "ok", "gpus": [{"index": 0}]}')
        client, _ = client_for(stub.url)
        first = client.state()
        first["gpus"].clear()
        assert client.state()["gpus"] == [{"index": 0}]
        assert stub.hits["/v1/state"] == 1

    @pytest.mark.parametrize(
        ("reply", "message"),
        [(Reply(502, {}, b""), "HTTP 502"), (Reply(200, {}, b'{"hello": 1}'), "no `gpus`")],
    )
    def test_errors_raise(self, stub, reply, message):
        stub.replies["/v1/state"] = reply
        client, _ = client_for(stub.url)
        with pytest.raises(GpuwatchError, match=message):
            client.state()

    def test_bad_url_is_refused_at_once(self):
        with pytest.raises(ValueError, match="http://HOST:PORT"):
            GpuwatchClient("127.0.0.1:9478", fail_open=False)


class TestAgainstRealDaemon:
    """The client reads a real `gpuwatch serve`'s answers as DESIGN §3 defines them."""

    def test_cool_node_admits_naming_a_gpu_and_serves_its_state(self, cool_node):
        client = GpuwatchClient(cool_node.url, fail_open=False)
        result = client.admit("sheddable")
        assert (result.admitted, result.state, result.fallback) == (True, "ok", False)
        assert result.gpu in {0, 1}
        assert 0 <= result.pressure < 1
        document = client.state()
        assert [gpu["index"] for gpu in document["gpus"]] == [0, 1]

    def test_hot_node_holds_back_and_the_client_waits_out_retry_after(self, hot_node):
        client = GpuwatchClient(hot_node.url, fail_open=True, max_age_s=0.0)
        first = client.admit("default")
        assert (first.admitted, first.state, first.fallback, first.from_cache) == (False, "hot", False, False)
        assert first.retry_after_s >= 1
        assert first.reason
        again = client.admit("default")
        assert (again.admitted, again.from_cache) == (False, True)
        assert 0 < again.retry_after_s <= first.retry_after_s
        assert client.admit("critical").admitted


class TestLeaseInAnswers:
    """Every admission carries its lease: id, GPU index and uuid, and the duration planned with."""

    def test_admission_names_lease_uuid_and_planned_duration(self, stub):
        stub.replies["/v1/admit"] = admit_reply(gpu=2)
        client, _ = client_for(stub.url)
        result = client.admit(expected_s=8)
        assert (result.lease, result.gpu, result.uuid) == (LEASE, 2, "GPU-stub-2")
        assert (result.expected_s, result.expected_basis) == (8.0, "configured")
        assert stub.queries == ["/v1/admit?class=default&expected_s=8.0"]

    def test_dry_run_asks_without_a_lease(self, stub):
        stub.replies["/v1/admit"] = admit_reply(lease=None)
        client, _ = client_for(stub.url)
        result = client.admit(dry_run=True)
        assert (result.admitted, result.lease) == (True, None)
        assert stub.queries == ["/v1/admit?class=default&dry_run=1"]

    @pytest.mark.parametrize("expected_s", [0, -1, float("nan"), float("inf"), 86401, True])
    def test_a_duration_gpuwatch_would_refuse_is_the_callers_error(self, stub, expected_s):
        client, _ = client_for(stub.url)
        with pytest.raises(GpuwatchRequestError, match="expected_s must be a number of seconds"):
            client.admit(expected_s=expected_s)
        assert stub.hits["/v1/admit"] == 0


class TestRelease:
    """release: 200 ends it; 404 is "not open", not an error; a failure to tell is logged, not raised."""

    def test_released_says_how_long_it_was_held(self, stub):
        stub.replies["/v1/release"] = release_reply(held_s=2.25)
        client, _ = client_for(stub.url)
        result = client.release(LEASE)
        assert (result.outcome, result.released, result.held_s) == (RELEASED, True, 2.25)
        assert (stub.methods, stub.queries) == (["POST"], [f"/v1/release?lease={LEASE}"])

    def test_a_lease_no_longer_open_is_not_an_error(self, stub):
        stub.replies["/v1/release"] = not_open_reply()
        client, _ = client_for(stub.url)
        result = client.release(LEASE)
        assert (result.outcome, result.released) == (NOT_OPEN, False)

    @pytest.mark.parametrize(
        "reply",
        [Reply(502, {}, b"<html>Bad Gateway</html>"), Reply(404, {}, b"<html>404</html>")],
        ids=["proxy-502", "proxy-404"],
    )
    def test_an_answer_that_is_not_gpuwatchs_is_logged_not_raised(self, stub, reply, caplog):
        stub.replies["/v1/release"] = reply
        client, _ = client_for(stub.url)
        with caplog.at_level(logging.WARNING):
            result = client.release(LEASE)
        assert result.outcome == NOT_TOLD
        assert f"could not release gpuwatch lease {LEASE[:6]}…" in caplog.text
        assert LEASE not in caplog.text  # the id is the lease's only credential: never logged whole
        assert "it ends at its deadline" in caplog.text

    def test_an_unreachable_daemon_is_logged_not_raised(self, caplog):
        client, _ = client_for(f"http://127.0.0.1:{free_port()}")
        with caplog.at_level(logging.WARNING):
            result = client.release(LEASE)
        assert (result.outcome, result.released) == (NOT_TOLD, False)
        assert "connection refused" in result.reason
        assert "connection refused" in caplog.text

    def test_an_id_gpuwatch_calls_malformed_raises(self, stub):
        body = b'{"error": "bad_lease", "message": "lease \'x\' is not a lease id"}'
        stub.replies["/v1/release"] = Reply(400, {}, body)
        client, _ = client_for(stub.url)
        with pytest.raises(GpuwatchRequestError, match="is not a lease id"):
            client.release("x")


class TestLeaseBlock:
    """`with client.lease(...)` admits, yields the admission and releases when the block ends."""

    def test_released_when_the_block_ends(self, stub):
        stub.replies["/v1/admit"] = admit_reply(gpu=1)
        stub.replies["/v1/release"] = release_reply()
        client, _ = client_for(stub.url)
        with client.lease(class_="critical", expected_s=10) as job:
            assert (job.gpu, job.uuid, job.lease) == (1, "GPU-stub-1", LEASE)
            assert stub.hits["/v1/release"] == 0  # held while the job runs
        assert stub.queries == ["/v1/admit?class=critical&expected_s=10.0", f"/v1/release?lease={LEASE}"]

    def test_released_when_the_block_raises_and_the_error_is_the_blocks(self, stub):
        stub.replies["/v1/admit"] = admit_reply()
        stub.replies["/v1/release"] = Reply(500, {}, b"")  # the release fails too: the job's error wins
        client, _ = client_for(stub.url)
        with pytest.raises(ZeroDivisionError), client.lease():
            _ = 1 / 0
        assert stub.hits["/v1/release"] == 1

    def test_held_back_raises_before_the_block_with_retry_after(self, stub):
        stub.replies["/v1/admit"] = held_back_reply(retry_after="4")
        client, _ = client_for(stub.url)
        entered = False
        with (
            pytest.raises(GpuwatchHeldBack, match="class default held back: node hot") as held,
            client.lease(),
        ):
            entered = True
        assert not entered
        assert (held.value.result.retry_after_s, held.value.result.fallback) == (4.0, False)
        assert stub.hits["/v1/release"] == 0

    def test_waits_out_retry_after_then_runs_the_block(self, stub):
        stub.replies["/v1/admit"] = [
            held_back_reply(retry_after="3"),
            held_back_reply(retry_after="2"),
            admit_reply(),
        ]
        stub.replies["/v1/release"] = release_reply()
        client, clock = client_for(stub.url)
        slept = []

        def sleep(seconds):
            slept.append(seconds)
            clock.advance(seconds)

        with client.lease(wait_s=10, sleep=sleep) as job:
            assert job.lease == LEASE
        assert slept == [3.0, 2.0]
        assert stub.hits["/v1/admit"] == 3
        assert stub.hits["/v1/release"] == 1

    def test_gives_up_at_wait_s(self, stub):
        stub.replies["/v1/admit"] = held_back_reply(retry_after="3")
        client, clock = client_for(stub.url)
        slept = []

        def sleep(seconds):
            slept.append(seconds)
            clock.advance(seconds)

        with pytest.raises(GpuwatchHeldBack), client.lease(wait_s=5, sleep=sleep):
            pass
        assert slept == [3.0, 2.0]  # the second wait ends at the deadline, and the cache still holds back
        assert stub.hits["/v1/admit"] == 2

    def test_fail_open_runs_the_block_without_a_lease_and_releases_nothing(self, stub):
        stub.replies["/v1/admit"] = Reply(500, {}, b"")
        client, _ = client_for(stub.url, fail_open=True)
        with client.lease(wait_s=30) as job:
            assert (job.admitted, job.fallback, job.lease) == (True, True, None)
        assert stub.hits["/v1/release"] == 0

    def test_fail_closed_raises_at_once_without_waiting(self, stub):
        stub.replies["/v1/admit"] = Reply(500, {}, b"")
        client, _ = client_for(stub.url, fail_open=False)
        with (
            pytest.raises(GpuwatchHeldBack, match="gpuwatch gave no answer") as held,
            client.lease(wait_s=30, sleep=pytest.fail),
        ):
            pass
        assert held.value.result.fallback


class TestLeasesOnRealDaemon:
    """The books of a real `gpuwatch serve` balance: each lease the client takes, it ends."""

    def test_lease_block_holds_one_lease_and_ends_it(self, lease_node):
        client = GpuwatchClient(lease_node.url, fail_open=False)
        with client.lease(class_="default", expected_s=10) as job:
            assert well_formed(job.lease)
            assert (job.expected_s, job.expected_basis) == (10.0, "request")
            uuids = {gpu["index"]: gpu["uuid"] for gpu in lease_node.state()["gpus"]}
            assert job.uuid == uuids[job.gpu]
            lease_node.wait_open_leases(1)
        assert lease_node.release(job.lease).status == 404  # the block released it
        assert lease_node.wait_open_leases(0) == 0

    def test_a_job_that_raises_still_ends_its_lease(self, lease_node):
        client = GpuwatchClient(lease_node.url, fail_open=False)
        leases = []

        def failing_job():
            with client.lease(expected_s=5) as job:
                leases.append(job.lease)
                raise RuntimeError("job failed")

        with pytest.raises(RuntimeError, match="job failed"):
            failing_job()
        assert lease_node.release(leases[0]).status == 404
        assert lease_node.wait_open_leases(0) == 0

    def test_release_twice_is_released_then_not_open(self, lease_node):
        client = GpuwatchClient(lease_node.url, fail_open=False)
        job = client.admit("sheddable")
        first, second = client.release(job.lease), client.release(job.lease)
        assert (first.outcome, second.outcome) == (RELEASED, NOT_OPEN)
        assert 0 <= first.held_s < 5
        assert lease_node.wait_open_leases(0) == 0
