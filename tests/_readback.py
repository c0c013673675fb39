"""Reading a real MLflow store back in tests: runs, metric histories, the calls artifact."""

from __future__ import annotations


class Store:
    """Read-back helpers over the test's store (always through a real MlflowClient)."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    @property
    def experiment_ids(self) -> tuple[str, ...]:
        """Where ``runs()`` looks by default: the Default experiment."""
        return ("0",)

    def runs(self, experiment_ids: tuple[str, ...] | None = None) -> list:
        return self.client.search_runs(list(experiment_ids or self.experiment_ids),
                                       order_by=["attributes.start_time ASC"], max_results=1000)

    def run(self, run_id: str):
        return self.client.get_run(run_id)

    def run_named(self, name: str, experiment_ids: tuple[str, ...] | None = None):
        found = [r for r in self.runs(experiment_ids) if r.info.run_name == name]
        assert len(found) == 1, f"expected one run named {name!r}, found {len(found)}"
        return found[0]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def artifact_lines(self, run_id: str) -> list[dict]:
        """Every line of the run's ``llm/`` artifacts (from a server: through its artifact proxy)."""
        import json

        lines = []
        for item in self.client.list_artifacts(run_id, "llm"):
            path = self.client.download_artifacts(run_id, item.path)
            with open(path, encoding="utf-8") as fh:
                lines += [json.loads(line) for line in fh if line.strip()]
        return sorted(lines, key=lambda line: line["step"])
