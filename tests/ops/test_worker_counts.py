"""Worker counts follow the CPU quota of the container, not the node's core count: cgroup
v2 `cpu.max` and v1 `cpu.cfs_quota_us`, read from real files laid out as the kernel does,
and the result shared among the runs that run at once on the same CPUs."""

from __future__ import annotations

import os

import pytest

from assets.exports import workers


def cgroup_v2(tmp_path, content: str) -> str:
    (tmp_path / "cpu.max").write_text(content + "\n")
    return str(tmp_path)


def cgroup_v1(tmp_path, quota: str, period: str = "100000") -> str:
    folder = tmp_path / "cpu,cpuacct"
    folder.mkdir()
    (folder / "cpu.cfs_quota_us").write_text(quota + "\n")
    (folder / "cpu.cfs_period_us").write_text(period + "\n")
    return str(tmp_path)


@pytest.mark.parametrize(
    ("content", "quota"),
    [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5), ("garbage", None)],
)
def test_cgroup_v2_quota(tmp_path, content, quota):
    assert workers.cgroup_cpu_quota(cgroup_v2(tmp_path, content)) == quota


@pytest.mark.parametrize(("quota", "expected"), [("-1", None), ("50000", 0.5), ("300000", 3.0)])
def test_cgroup_v1_quota(tmp_path, quota, expected):
    assert workers.cgroup_cpu_quota(cgroup_v1(tmp_path, quota)) == expected


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert workers.cgroup_cpu_quota(str(tmp_path)) is None


def test_a_quota_caps_the_cpus_and_rounds_up(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert workers.usable_cpus(cgroup_v2(tmp_path, "50000 100000")) == 1
    assert workers.usable_cpus(cgroup_v2(tmp_path, f"{affinity * 1000000} 100000")) == affinity


def test_workers_are_shared_among_the_runs_on_the_same_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "CGROUP_ROOT", cgroup_v2(tmp_path, "100000 100000"))
    cpus = workers.usable_cpus()
    assert cpus == 1  # the container's quota, whatever the host has
    assert workers.worker_count(runs_sharing=1) == cpus
    assert workers.worker_count(runs_sharing=4) == 1  # never fewer than one
    monkeypatch.setattr(workers, "CGROUP_ROOT", cgroup_v2(tmp_path, "400000 100000"))
    monkeypatch.setenv("GOALPORT_RUNS_SHARING_CPUS", "2")
    affinity = len(os.sched_getaffinity(0))
    assert workers.worker_count() == max(1, min(affinity, 4) // 2)
    assert workers.worker_count(3) == 3  # asked for explicitly
