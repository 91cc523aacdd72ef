"""What the Dagster UI shows, read through its GraphQL API from a real webserver on 127.0.0.1:
the registry view after a blocked challenger, the run's verdict tags and its failure read as the
verdict, the comparison table, and the sensors listed as the automation of the monitoring assets
and of the rollout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg

from lockgate._util.process import stop_process_group
from pipelines.demo import _prepare_dagster_home
from pipelines.fraud import PIPELINES

from .test_gate import KEY_FEATURES, champion, gate_data, source_data, spec, train  # noqa: F401

REPO = Path(__file__).resolve().parents[2]

REGISTRY = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on TableMetadataEntry { table { records } }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}
"""

AUTOMATIONS = """
query ($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) {
    targetingInstigators { ... on Sensor { name } }
    dependencyKeys { path }
  }
}
"""

RUN = """
query ($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }
"""

STEP_FAILURES = """
query ($id: ID!) {
  logsForRun(runId: $id, limit: 5000) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent {
          stepKey
          error { message className }
          failureMetadata {
            metadataEntries {
              label
              ... on FloatMetadataEntry { floatValue }
              ... on TextMetadataEntry { text }
            }
          }
        }
      }
    }
  }
}
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]


class Webserver:
    """``dagster-webserver`` on a workspace file, in its own process group."""

    def __init__(self, home: Path, dagster_home: Path, log: Path) -> None:
        self.port = _port()
        workspace = home / "ui_workspace.yaml"
        workspace.write_text(
            "load_from:\n"
            "  - python_module:\n"
            "      module_name: tests.integration.ui_location\n"
            "      location_name: lockgate_ui_test\n"
            f"      working_directory: {REPO}\n"
        )
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", str(workspace),
             "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env={**os.environ, "DAGSTER_HOME": str(dagster_home),
                 "LOCKGATE_TEST_UI_HOME": str(home), "PYTHONPATH": str(REPO)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}/graphql"

    def wait(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                data = _query(self.url, "{ version }", {})
                if data.get("version"):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"webserver not up in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process_group(self.process.pid)
        self.process.wait(timeout=30)


def _meta(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        e["label"]: [json.loads(r) for r in e["table"]["records"]]
        if "table" in e
        else e.get("text")
        for e in entries
    }


def test_the_ui_shows_registry_verdict_comparison_and_automations(env) -> None:
    _prepare_dagster_home(env.dagster_home)
    with dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:
        assert train(spec(), env, instance).success
        incumbent = champion(env)
        blocked = train(spec(exclude=KEY_FEATURES), env, instance)
        assert not blocked.success
    server = Webserver(env.home, env.dagster_home, env.home / "webserver.log")
    try:
        server.wait()
        # the registry view: newest first, the blocked challenger beside the champion
        data = _query(server.url, REGISTRY, {"path": ["fraud", "model_registry"]})
        (latest,) = data["assetOrError"]["assetMaterializations"]
        assert latest["runId"] == blocked.run_id
        meta = _meta(latest["metadataEntries"])
        rows = meta["versions"]
        assert [(r["role"], r["verdict"]) for r in rows] == [
            ("challenger", "blocked"),
            ("champion", "passed"),
        ]
        assert rows[1]["version"] == incumbent
        assert {"code_commit", "data_snapshot", "weights", "traffic_pct"} <= set(rows[0])

        # the comparison on the evaluation report, in place
        data = _query(server.url, REGISTRY, {"path": ["fraud", "evaluation_report"]})
        (evaluation,) = data["assetOrError"]["assetMaterializations"]
        side = _meta(evaluation["metadataEntries"])["vs_champion"]
        assert {r["name"] for r in side if r["change"] == "dropped"} == set(KEY_FEATURES)

        # the blocked run reads as a decision in the runs list
        run = _query(server.url, RUN, {"id": blocked.run_id})["runOrError"]
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["lockgate/verdict"] == "blocked"
        assert tags["lockgate/version"] == rows[0]["version"]

        # the sidebar's "Automations": the sensor that records each monitoring asset
        lgbm = PIPELINES[0]
        for asset, sensor in (
            ("drift_report", lgbm.drift_sensor_name),
            ("live_performance", lgbm.feedback_sensor_name),
        ):
            (node,) = _query(server.url, AUTOMATIONS, {"path": [lgbm.name, asset]})["assetNodes"]
            assert [s["name"] for s in node["targetingInstigators"]] == [sensor]
        (node,) = _query(server.url, AUTOMATIONS, {"path": [lgbm.name, "live_performance"]})[
            "assetNodes"
        ]
        assert [lgbm.name, "evaluation_report"] in [k["path"] for k in node["dependencyKeys"]]

        # the canary controller is among the rollout asset's automations (it targets the rollout
        # job; the retrain sensors are listed too: their train job ends with the rollout)
        (node,) = _query(server.url, AUTOMATIONS, {"path": [lgbm.name, "rollout"]})["assetNodes"]
        assert lgbm.canary_sensor_name in [s["name"] for s in node["targetingInstigators"]]

        # the blocked run's failure, as the run page shows it: the verdict and its numbers
        events = _query(server.url, STEP_FAILURES, {"id": blocked.run_id})["logsForRun"]["events"]
        (failure,) = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
        assert failure["stepKey"] == "fraud_gate"
        assert failure["error"]["message"].split(": ", 1)[1].startswith("BLOCKED by gate_vs_")
        numbers = {
            e["label"]: e.get("floatValue", e.get("text"))
            for e in failure["failureMetadata"]["metadataEntries"]
        }
        assert numbers["decision"] == "blocked"
        assert numbers["champion"] == incumbent
        assert numbers["gate_vs_champion.actual"] < numbers["gate_vs_champion.threshold"]
    finally:
        server.stop()
