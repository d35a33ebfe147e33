"""Sample names in Prometheus text exposition, as the textfile collector would read them."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.stub_docker import install_stub_docker, run_storage_script


def exported_sample_names(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def storage_script_sample_names(tmp_path: Path) -> set[str]:
    """Sample names in the textfile the storage cleanup writes (stub docker, tmp dirs)."""
    stub = install_stub_docker(tmp_path / "stub-docker")
    metrics_file = tmp_path / "neuros_storage.prom"
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    result = run_storage_script(
        stub,
        "clean",
        "--metrics-file",
        str(metrics_file),
        "--log-dir",
        str(log_dir),
        "--lock-file",
        str(tmp_path / "storage.lock"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return exported_sample_names(metrics_file.read_text())
