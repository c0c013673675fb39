"""mltrack.writer.rest_client against a real ``mlflow server`` on PostgreSQL, read back with MlflowClient; and its
HTTP behaviour (credentials, TLS settings, kept-alive connections, forks) against tiny local servers."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mltrack.testing._postgres import free_port
from mltrack.writer import rest_client
from mltrack.writer.rest_client import (FinishedSpan, Metric, Param, RestClient, RestError, RunTag,
                                        UnsupportedArtifactUri, ViewType)

NOW = int(time.time() * 1000)


@pytest.fixture
def mlflow_client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri)


@pytest.fixture
def rest(mlflow_server):
    return RestClient(mlflow_server.uri)


def _name(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


# -- against the real server ------------------------------------------------------------------------------
@pytest.mark.server
def test_experiments_match_mlflowclient(rest, mlflow_client):
    name = _name("rest-exp")
    assert rest.get_experiment_by_name(name) is None
    experiment_id = rest.create_experiment(name, tags={"team": "search"})
    theirs = mlflow_client.get_experiment_by_name(name)
    ours = rest.get_experiment_by_name(name)
    assert (ours.experiment_id, ours.name, ours.artifact_location, ours.lifecycle_stage, dict(ours.tags)) == \
        (theirs.experiment_id, theirs.name, theirs.artifact_location, theirs.lifecycle_stage, theirs.tags)
    assert ours.experiment_id == experiment_id and ours.tags == {"team": "search"}
    assert ours.creation_time == theirs.creation_time
    assert rest.get_experiment(experiment_id) == ours
    with pytest.raises(RestError) as exc:
        rest.create_experiment(name)
    assert exc.value.error_code == "RESOURCE_ALREADY_EXISTS" and exc.value.status == 400

    listed = rest.search_experiments(max_results=1000)
    assert {e.experiment_id for e in listed} == {e.experiment_id for e in mlflow_client.search_experiments()}
    assert len(rest.search_experiments(max_results=1)) == 1
    filtered = rest.search_experiments(filter_string=f"name = '{name}'", view_type=ViewType.ALL)
    assert [e.experiment_id for e in filtered] == [experiment_id]


@pytest.mark.server
def test_runs_batches_and_artifacts_match_mlflowclient(rest, mlflow_client):
    experiment_id = rest.create_experiment(_name("rest-runs"))
    key = os.urandom(8).hex()
    run = rest.create_run(experiment_id, start_time=NOW - 5000, tags={"mltrack.run_key": key, "team": "a"},
                          run_name="rest-run")
    run_id = run.info.run_id
    theirs = mlflow_client.get_run(run_id)
    assert (run.info.run_name, run.info.experiment_id, run.info.start_time, run.info.status,
            run.info.artifact_uri) == ("rest-run", experiment_id, NOW - 5000, "RUNNING", theirs.info.artifact_uri)
    assert theirs.data.tags["mltrack.run_key"] == key and theirs.data.tags["team"] == "a"

    # 1,205 metric rows, 3 params and 120 tags: more than one request holds (MLflow's limits: 1000 / 100 / 100).
    metrics = [Metric("llm.calls", float(i + 1), NOW + i, i) for i in range(1200)]
    metrics += [Metric("odd", v, NOW, i) for i, v in enumerate([0.1, -2.5, 1e300, float("nan"), float("inf")])]
    tags = [RunTag(f"tag.{i}", f"value {i}") for i in range(120)]
    rest.log_batch(run_id, metrics=metrics, params=[Param("model", "gpt-4o-mini"), Param("n", 3),
                                                    Param("long", "x" * 6000)], tags=tags)
    history = sorted((m.step, m.value, m.timestamp) for m in mlflow_client.get_metric_history(run_id, "llm.calls"))
    assert history == [(i, float(i + 1), NOW + i) for i in range(1200)]
    # Odd values are stored as when MlflowClient sends them (NaN stays NaN; the SQL store clamps infinity).
    from mlflow.entities import Metric as MlflowMetric

    mlflow_client.log_batch(run_id, metrics=[MlflowMetric("odd.mlflow", m.value, m.timestamp, m.step)
                                             for m in metrics if m.key == "odd"])
    odd = [repr(m.value) for m in sorted(mlflow_client.get_metric_history(run_id, "odd"), key=lambda m: m.step)]
    assert odd == [repr(m.value) for m in sorted(mlflow_client.get_metric_history(run_id, "odd.mlflow"),
                                                 key=lambda m: m.step)]
    assert odd[:4] == ["0.1", "-2.5", "1e+300", "nan"]
    # Writing the same rows again writes nothing twice (the sink's replays rely on it).
    rest.log_batch(run_id, metrics=metrics[:10])
    assert len(mlflow_client.get_metric_history(run_id, "llm.calls")) == 1200
    # MLflow's own entities work too.
    rest.log_batch(run_id, metrics=[MlflowMetric("from.mlflow", 7.0, NOW, 0)])

    ours, theirs = rest.get_run(run_id), mlflow_client.get_run(run_id)
    assert dict(ours.data.params) == theirs.data.params and theirs.data.params["long"] == "x" * 6000
    assert dict(ours.data.tags) == theirs.data.tags and len(theirs.data.tags) >= 122
    assert ours.data.metrics["llm.calls"] == theirs.data.metrics["llm.calls"] == 1200.0
    assert ours.data.metrics["from.mlflow"] == 7.0

    rest.log_text(run_id, '{"step": 0, "prompt": "héllo"}\n', "llm/calls-000000.jsonl")
    rest.log_text(run_id, "second\n", "llm/calls-000000.jsonl")  # the same name again: overwritten
    rest.log_text(run_id, "nested\n", "llm/deeper/notes.txt")
    assert [f.path for f in mlflow_client.list_artifacts(run_id, "llm")] == ["llm/calls-000000.jsonl", "llm/deeper"]
    with open(mlflow_client.download_artifacts(run_id, "llm/calls-000000.jsonl"), encoding="utf-8") as fh:
        assert fh.read() == "second\n"
    with open(mlflow_client.download_artifacts(run_id, "llm/deeper/notes.txt"), encoding="utf-8") as fh:
        assert fh.read() == "nested\n"
    with pytest.raises(ValueError, match="relative path"):
        rest.log_text(run_id, "x", "../escape.txt")

    rest.set_terminated(run_id, status="FAILED", end_time=NOW + 9000)
    info = mlflow_client.get_run(run_id).info
    assert (info.status, info.end_time) == ("FAILED", NOW + 9000)

    found = rest.search_runs([experiment_id], filter_string=f"tags.`mltrack.run_key` = '{key}'",
                             run_view_type=ViewType.ALL, max_results=1)
    assert [r.info.run_id for r in found] == [run_id]
    theirs_found = mlflow_client.search_runs([experiment_id], filter_string=f"tags.`mltrack.run_key` = '{key}'")
    assert [r.info.run_id for r in theirs_found] == [run_id]
    assert rest.search_runs([experiment_id], filter_string="tags.`mltrack.run_key` = 'nope'") == []
    second = rest.create_run(experiment_id)  # no tags, name or start time: the server picks them, as with MLflow
    assert second.info.run_name and abs(second.info.start_time - time.time() * 1000) < 60_000
    assert len(rest.search_runs([experiment_id], max_results=1)) == 1
    assert rest.search_runs([experiment_id], max_results=1).token


@pytest.mark.server
def test_errors_carry_mlflows_error_code(rest, mlflow_server):
    with pytest.raises(RestError) as exc:
        rest.get_run("0" * 32)
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST" and exc.value.status == 404
    with pytest.raises(RestError) as exc:
        rest.log_batch("0" * 32, metrics=[Metric("m", 1.0, NOW, 0)])
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestError) as exc:
        rest.create_run("999999999")
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestError) as exc:
        rest.search_runs(["0"], filter_string="this is not a filter")
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    # Nothing listens: an OSError, as the sink's outage handling expects.
    with pytest.raises(OSError):
        RestClient(f"http://127.0.0.1:{free_port()}").search_experiments(max_results=1)


def _llm_record(i: int, end_ms: float) -> dict:
    return {"model": "gpt-4o-mini", "provider": "openai", "timestamp": end_ms, "latency_ms": 40.0 + i,
            "prompt_tokens": 10 + i, "completion_tokens": 3, "total_tokens": 13 + i, "prompt_cost": "0.0000015",
            "completion_cost": "0.0000018", "total_cost": "0.0000033", "prompt": [{"role": "user", "content": f"q{i}"}],
            "response": f"a{i}", "params": {"temperature": 0.5}}


# Ids differ by nature; MLflow's client also leaves two attributes it uses internally to pass the start time and
# experiment to its span processor; the light client names the trace through a trace-tag attribute.
_IDS_AND_INTERNALS = ("mlflow.traceRequestId", "mlflow.experimentId", "mlflow.spanStartTimeNs",
                      "mlflow.traceTag.mlflow.traceName")


def _shape(trace) -> dict:
    """What a trace says, without ids: name, state, usage, and each span's type, parent's name, data."""
    by_id = {s.span_id: s for s in trace.data.spans}
    spans = sorted(
        (s.name, s.span_type, by_id[s.parent_id].name if s.parent_id else None, json.dumps(s.inputs),
         json.dumps(s.outputs), s.status.status_code.value, s.start_time_ns, s.end_time_ns,
         json.dumps({k: v for k, v in s.attributes.items() if k not in _IDS_AND_INTERNALS}, sort_keys=True))
        for s in trace.data.spans)
    return {"name": trace.info.tags.get("mlflow.traceName"), "state": trace.info.state.value,
            "usage": trace.info.token_usage, "spans": spans}


@pytest.mark.server
def test_spans_read_back_as_mlflowclients_do(rest, mlflow_client, mlflow_server):
    """The writer's trace code (writer/spans.py) run once with MlflowClient and once with RestClient: the traces
    MLflow reads back are the same, and linked to their runs."""
    import mlflow

    from mltrack.writer.spans import RootSpan, write_call_traces, write_run_trace

    experiment_id = rest.create_experiment(_name("rest-traces"))
    end = time.time() * 1000
    records = [_llm_record(i, end - 1000 + i * 100) for i in range(3)]
    root = RootSpan("answer", int(end - 2000), int(end + 500), failed=True)
    ids = {}
    mlflow.set_tracking_uri(mlflow_server.uri)  # MlflowClient's traces go where MLflow's tracking URI points
    try:
        for label, client in (("mlflow", mlflow_client), ("rest", rest)):
            run_id = rest.create_run(experiment_id, run_name=label).info.run_id
            ids[label] = (run_id, write_run_trace(client, experiment_id, run_id, root, records),
                          write_call_traces(client, experiment_id, run_id, records[:1])[0])
        mlflow.flush_trace_async_logging()
    finally:
        mlflow.set_tracking_uri(None)

    for kind in (1, 2):  # the run's trace, then a call's own trace
        theirs = _shape(mlflow_client.get_trace(ids["mlflow"][kind]))
        ours = _shape(mlflow_client.get_trace(ids["rest"][kind]))
        assert ours == theirs
    run_trace = _shape(mlflow_client.get_trace(ids["rest"][1]))
    assert run_trace["state"] == "ERROR" and run_trace["name"] == "answer"
    assert run_trace["usage"] == {"input_tokens": 33, "output_tokens": 9, "total_tokens": 42}
    assert [s[1] for s in run_trace["spans"]] == ["CHAIN", "LLM", "LLM", "LLM"]
    for label in ("mlflow", "rest"):
        run_id, run_trace_id, call_trace_id = ids[label]
        linked = mlflow_client.search_traces(locations=[experiment_id], run_id=run_id)
        assert sorted(t.info.trace_id for t in linked) == sorted([run_trace_id, call_trace_id])

    # Finished spans written directly, twice: the second write replaces the first (no duplicate spans).
    span = FinishedSpan(trace_id="ab" * 16, span_id="cd" * 8, name="direct", start_time_ns=10**18,
                        end_time_ns=10**18 + 5_000_000, span_type="LLM", inputs={"q": 1}, outputs="done",
                        attributes={"mlflow.chat.tokenUsage": {"input_tokens": 2, "output_tokens": 1,
                                                               "total_tokens": 3}})
    rest.log_spans(experiment_id, [span])
    rest.log_spans(experiment_id, [span])
    trace = mlflow_client.get_trace("tr-" + "ab" * 16)
    assert [(s.name, s.inputs, s.outputs) for s in trace.data.spans] == [("direct", {"q": 1}, "done")]
    assert trace.info.token_usage["total_tokens"] == 3 and trace.info.execution_duration == 5


@pytest.mark.server
def test_server_and_database_outages(rest, mlflow_server, postgres):
    """PostgreSQL down: the server answers TEMPORARILY_UNAVAILABLE. The server down: OSError. Both come back on the
    same port and the same client (its kept-alive connection is replaced) carries on."""
    experiment_id = rest.create_experiment(_name("rest-outage"))
    postgres.stop()
    try:
        with pytest.raises(RestError) as exc:
            rest.get_experiment(experiment_id)
        assert exc.value.error_code == "TEMPORARILY_UNAVAILABLE" and exc.value.status == 503
    finally:
        postgres.start()
    assert rest.get_experiment(experiment_id).experiment_id == experiment_id  # the server reconnects by itself
    postgres.restart(hard=True)  # killed, as a crash would: crash recovery, same port, committed data kept
    assert rest.get_experiment(experiment_id).experiment_id == experiment_id

    mlflow_server.kill()
    try:
        with pytest.raises(OSError):
            rest.get_experiment(experiment_id)
    finally:
        mlflow_server.start()
    assert rest.get_experiment(experiment_id).experiment_id == experiment_id


@pytest.mark.server
def test_using_it_never_imports_mlflow(mlflow_server, tmp_path):
    script = tmp_path / "light.py"
    script.write_text(f"""
import sys
from mltrack.writer.rest_client import Metric, RestClient
c = RestClient({mlflow_server.uri!r})
e = c.create_experiment("light-" + __import__("os").urandom(4).hex())
r = c.create_run(e, tags={{"k": "v"}}, run_name="light")
c.log_batch(r.info.run_id, metrics=[Metric("m", 1.0, 1, 0)])
c.log_text(r.info.run_id, "x", "llm/a.txt")
c.set_terminated(r.info.run_id)
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("mlflow", "requests", "urllib3", "google", "opentelemetry"))
print(repr(heavy))
""")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-X", "importtime", str(script)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "mltrack.writer.rest_client" in imported
    assert not [m for m in imported if m.split(".")[0] == "mlflow"]


# -- HTTP behaviour against tiny local servers ---------------------------------------------------------------
class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, close_after_each: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.seen: list[tuple[str, dict[str, str], tuple[str, int]]] = []
        self.close_after_each = close_after_each
        self.status = 200
        self.reply: dict = {"experiments": []}

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address))
        body = json.dumps(self.server.reply).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.server.close_after_each:  # close without saying so (as an idle timeout does)
            self.close_connection = True

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    server = _Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_mlflow_settings(monkeypatch, tmp_path):
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
                "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of the user's


def test_credentials_as_mlflow_sends_them_and_never_in_errors(recorder, no_mlflow_settings, monkeypatch, tmp_path):
    client = RestClient(recorder.uri + "/prefix/")  # a server behind a path prefix
    client.search_experiments(max_results=1)
    path, headers, _ = recorder.seen[-1]
    assert path == "/prefix/api/2.0/mlflow/experiments/search" and "authorization" not in headers

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "secret-token-123")
    client.search_experiments()
    assert recorder.seen[-1][1]["authorization"] == "Bearer secret-token-123"

    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = filed\n"
                                                      "mlflow_tracking_password = from-file\n")
    client.search_experiments()  # username and password win over the token, as in MLflow
    assert recorder.seen[-1][1]["authorization"] == "Basic " + base64.b64encode(b"filed:from-file").decode()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa:ss")
    client.search_experiments()
    assert recorder.seen[-1][1]["authorization"] == "Basic " + base64.b64encode(b"alice:pa:ss").decode()

    recorder.status, recorder.reply = 401, {"error_code": "UNAUTHENTICATED", "message": "who are you"}
    with pytest.raises(RestError) as exc:
        client.search_experiments()
    assert exc.value.error_code == "UNAUTHENTICATED" and exc.value.status == 401
    text = f"{exc.value!r} {exc.value} {vars(exc.value)} {vars(client)!r}"
    assert "pa:ss" not in text and "secret-token" not in text and "YWxpY2U6cGE6c3M" not in text

    recorder.status, recorder.reply = 502, {}
    with pytest.raises(RestError) as exc:  # no MLflow error body: the code comes from the HTTP status
        client.search_experiments()
    assert (exc.value.error_code, exc.value.status) == ("TEMPORARILY_UNAVAILABLE", 502)


def test_auth_plugins_need_mlflows_client(no_mlflow_settings, monkeypatch):
    assert rest_client.supports("http://mlflow.internal:5000") and rest_client.supports("https://x")
    assert not rest_client.supports("databricks") and not rest_client.supports("sqlite:///mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "my_plugin")
    assert not rest_client.supports("http://mlflow.internal:5000")
    with pytest.raises(ValueError, match="http"):
        RestClient("sqlite:///x.db")


def test_one_kept_alive_connection_per_thread_and_a_new_one_after_fork(recorder, no_mlflow_settings):
    client = RestClient(recorder.uri)
    for _ in range(5):
        client.search_experiments()
    assert len({addr for _, _, addr in recorder.seen}) == 1  # five requests, one connection

    other = []
    thread = threading.Thread(target=lambda: other.append(client.search_experiments()))
    thread.start()
    thread.join()
    assert len({addr for _, _, addr in recorder.seen}) == 2

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            client.search_experiments()
            client.search_experiments()
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    client.search_experiments()  # the parent's connection still works
    addresses = [addr for _, _, addr in recorder.seen]
    assert len(set(addresses)) == 3 and addresses[-1] == addresses[0]


def test_a_connection_the_server_closed_is_replaced(no_mlflow_settings):
    server = _Recorder(close_after_each=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RestClient(server.uri)
        for _ in range(4):
            client.search_experiments()
            time.sleep(0.05)
        assert len(server.seen) == 4 and len({addr for _, _, addr in server.seen}) == 4
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(tmp_path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_tls_settings_as_mlflow_reads_them(no_mlflow_settings, monkeypatch, tmp_path):
    if not subprocess.run(["which", "openssl"], capture_output=True).returncode == 0:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = _self_signed(tmp_path)
    server = _Recorder()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ssl.SSLCertVerificationError):  # an OSError: unknown certificate, as with MLflow
            RestClient(uri).search_experiments()
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", cert)
        RestClient(uri).search_experiments()
        monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        client = RestClient(uri)
        client.search_experiments()
        client.search_experiments()
        assert [p for p, _, _ in server.seen] == ["/api/2.0/mlflow/experiments/search"] * 3
    finally:
        server.shutdown()
        server.server_close()


def test_artifacts_in_a_local_folder_are_written_there_and_others_refused(recorder, no_mlflow_settings, tmp_path):
    client = RestClient(recorder.uri)
    client._remember_artifacts("run-local", str(tmp_path / "art"))
    client._remember_artifacts("run-file", (tmp_path / "art2").as_uri())
    client._remember_artifacts("run-s3", "s3://bucket/0/run/artifacts")
    client.log_text("run-local", "a\n", "llm/calls-000000.jsonl")
    client.log_text("run-file", "b\n", "llm/calls-000003.jsonl")
    assert (tmp_path / "art" / "llm" / "calls-000000.jsonl").read_text() == "a\n"
    assert (tmp_path / "art2" / "llm" / "calls-000003.jsonl").read_text() == "b\n"
    with pytest.raises(UnsupportedArtifactUri) as exc:
        client.log_text("run-s3", "c", "llm/x.jsonl")
    assert exc.value.error_code == "NOT_IMPLEMENTED" and "s3://bucket" in str(exc.value)


@pytest.mark.server
def test_todays_sink_writes_through_it_unchanged(rest, mlflow_client, mlflow_server):
    """Drop-in check against the writer's Sink as it is today (its MlflowClient swapped for a RestClient): a run
    started, two calls with their artifact lines and spans, the run ended, then the same batch replayed. Adapt this
    test to the new writer's entry point when it lands; the end-to-end tests (test_server_tracking.py) stay."""
    import mlflow

    from mltrack.writer.records import END, LOG, START
    from mltrack.writer.sink import Sink

    experiment, key = _name("sink-exp"), os.urandom(8).hex()
    start = NOW - 3000
    calls = [{"step": i, "model": "gpt-4o-mini", "provider": "openai", "timestamp": start + 1000 * (i + 1),
              "latency_ms": 5.0, "prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9,
              "prompt": [{"role": "user", "content": f"q{i}"}], "response": f"a{i}"} for i in range(2)]
    batch = [{"t": START, "k": key, "n": "through-sink", "st": start, "kd": "function",
              "g": {"mltrack.run_key": key}, "a": {"p": "1"}, "x": experiment}]
    batch += [{"t": LOG, "k": key, "r": None, "m": [["llm.calls", i + 1, i, start + 1000 * (i + 1)]],
               "g": {"llm.model": "gpt-4o-mini"}, "c": call, "sp": True} for i, call in enumerate(calls)]
    batch += [{"t": END, "k": key, "r": None, "s": "FINISHED", "et": NOW, "m": {"execution_time_seconds": 3.0},
               "g": {}, "o": True}]
    skips = []
    sink = Sink(mlflow_server.uri, on_skip=skips.append)
    sink._client = rest
    mlflow.set_tracking_uri(mlflow_server.uri)  # today's Sink writes spans only where MLflow's URI points
    try:
        ids = sink.write(batch, replay=False)
        sink.write(batch, replay=True)  # a replay finds the run by its key and writes nothing twice
    finally:
        mlflow.set_tracking_uri(None)
    assert skips == []
    run = mlflow_client.get_run(ids[key])
    assert run.info.status == "FINISHED" and run.info.end_time == NOW and run.data.params == {"p": "1"}
    assert sorted((m.step, m.value) for m in mlflow_client.get_metric_history(ids[key], "llm.calls")) == \
        [(0, 1.0), (1, 2.0)]
    assert run.data.metrics["execution_time_seconds"] == 3.0
    with open(mlflow_client.download_artifacts(ids[key], "llm/calls-000000.jsonl"), encoding="utf-8") as fh:
        assert [json.loads(line)["response"] for line in fh] == ["a0", "a1"]
    traces = mlflow_client.search_traces(locations=[run.info.experiment_id], run_id=ids[key])
    assert len(traces) == 1 and sorted(s.name for s in traces[0].data.spans) == \
        ["gpt-4o-mini", "gpt-4o-mini", "through-sink"]
    assert len(mlflow_client.search_runs([run.info.experiment_id])) == 1


def test_http_proxy_from_the_environment_as_requests_uses_it(recorder, no_mlflow_settings, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxyuser:proxy%20pw@" + recorder.uri.split("://")[1])
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    RestClient("http://mlflow.example.invalid:5000").search_experiments()
    path, headers, _ = recorder.seen[-1]
    assert path == "http://mlflow.example.invalid:5000/api/2.0/mlflow/experiments/search"  # sent to the proxy
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"proxyuser:proxy pw").decode()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    RestClient(recorder.uri).search_experiments()  # bypassed: straight to the server
    assert recorder.seen[-1][0] == "/api/2.0/mlflow/experiments/search"
